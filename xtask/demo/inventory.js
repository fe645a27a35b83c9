// Demo "inventory" service: stock levels by item.
//
// GET /stock/<id>  -> 200 {"id", "stock"}, or 404 for unknown items ("missing")
// GET /health      -> 200
//
// Environment: PORT (listen on 127.0.0.1), OTEL_SERVICE_NAME.
'use strict';

const http = require('node:http');

const STOCK = { 42: 7, 7: 0, book: 12, lamp: 3 };

function reply(res, status, doc) {
  const body = JSON.stringify(doc) + '\n';
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') return reply(res, 200, { status: 'ok' });
  const m = /^\/stock\/([^/?]+)$/.exec(req.url);
  if (!m) return reply(res, 404, { error: 'no such route' });
  const id = decodeURIComponent(m[1]);
  if (!(id in STOCK)) return reply(res, 404, { error: 'unknown item', id });
  // A little work, so the spans have a visible duration.
  setTimeout(() => reply(res, 200, { id, stock: STOCK[id] }), 5);
});

server.keepAliveTimeout = 5000;
server.listen(Number(process.env.PORT || 8082), '127.0.0.1');
