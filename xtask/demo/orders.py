"""Demo "orders" service: for each order, asks the inventory service for stock.

GET /orders/<id>  -> 200 with the stock, or 502 when inventory answers 404
GET /health       -> 200

Environment: PORT (listen on 127.0.0.1), INVENTORY (host:port), OTEL_SERVICE_NAME.
"""

import http.client
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVENTORY = os.environ.get("INVENTORY", "127.0.0.1:8082")


class Orders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream pool expects

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if not self.path.startswith("/orders/"):
            return self.reply(404, {"error": "no such route"})
        item = self.path[len("/orders/"):]
        conn = http.client.HTTPConnection(INVENTORY, timeout=5)
        try:
            conn.request("GET", f"/stock/{item}")
            resp = conn.getresponse()
            body = resp.read()
        except OSError as e:
            return self.reply(503, {"error": f"inventory unreachable: {e}"})
        finally:
            conn.close()
        if resp.status != 200:
            return self.reply(502, {"error": f"inventory answered {resp.status}", "item": item})
        stock = json.loads(body)
        self.reply(200, {"order": item, "status": "accepted", "stock": stock["stock"]})

    def reply(self, status, doc):
        body = (json.dumps(doc) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass  # quiet: the traces are the point


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8081"))), Orders)
    server.daemon_threads = True
    server.serve_forever()
