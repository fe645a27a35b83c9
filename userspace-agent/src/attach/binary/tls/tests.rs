//! `tls_library` and `imported_tls` on this machine's libraries and programs.

use std::path::Path;

use super::*;
use crate::attach::binary::testutil::{skip, system_elf};

fn names(functions: &[TlsFunction]) -> Vec<&'static str> {
    functions.iter().map(|f| f.name).collect()
}

#[test]
fn libssl_is_openssl_with_all_five_functions() {
    let Some(elf) = system_elf("libssl", "/usr/lib/x86_64-linux-gnu/libssl.so.3") else {
        return;
    };
    let Some(TlsLibrary::OpenSsl { flavor, functions }) = tls_library(&elf) else {
        panic!("libssl is OpenSSL: {:?}", tls_library(&elf));
    };
    assert_eq!(flavor, OpenSslFlavor::OpenSsl);
    assert_eq!(names(&functions), OPENSSL_FUNCTIONS.to_vec());
    for function in &functions {
        assert_eq!(
            elf.file_offset(function.symbol.address),
            Some(function.file_offset)
        );
    }
    assert!(imported_tls(&elf).is_empty(), "libssl imports no SSL_*");
}

#[test]
fn node_is_openssl_statically_linked() {
    let Some(elf) = system_elf("node", "/usr/bin/node") else {
        return;
    };
    let Some(TlsLibrary::OpenSsl { flavor, functions }) = tls_library(&elf) else {
        panic!("node carries OpenSSL");
    };
    assert_eq!(flavor, OpenSslFlavor::OpenSsl);
    assert_eq!(names(&functions), OPENSSL_FUNCTIONS.to_vec());
}

#[test]
fn curl_and_python_are_not_tls_libraries_but_their_libraries_import_one() {
    // curl itself names no SSL_* at all: libcurl does the TLS, and imports it from libssl.
    if let Some(curl) = system_elf("curl", "/usr/bin/curl") {
        assert_eq!(tls_library(&curl), None);
        assert!(imported_tls(&curl).is_empty());
    }
    if let Some(libcurl) = system_elf("libcurl", "/usr/lib/x86_64-linux-gnu/libcurl.so.4") {
        assert_eq!(tls_library(&libcurl), None);
        assert_eq!(imported_tls(&libcurl), vec![ImportedTls::OpenSsl]);
    }
    let ssl = std::fs::read_dir("/usr/lib/python3.11/lib-dynload")
        .ok()
        .and_then(|d| {
            d.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("_ssl."))
            })
        });
    match ssl {
        Some(path) => {
            let elf = Elf::open(&path).expect("_ssl");
            assert_eq!(tls_library(&elf), None);
            assert_eq!(imported_tls(&elf), vec![ImportedTls::OpenSsl]);
        }
        None => skip("python_ssl", "no Python 3.11 _ssl module"),
    }
}

#[test]
fn gnutls_and_its_openssl_compatibility_layer() {
    if let Some(elf) = system_elf("gnutls", "/usr/lib/x86_64-linux-gnu/libgnutls.so.30") {
        let Some(TlsLibrary::GnuTls { functions }) = tls_library(&elf) else {
            panic!("libgnutls is GnuTLS: {:?}", tls_library(&elf));
        };
        assert_eq!(names(&functions), GNUTLS_FUNCTIONS.to_vec());
    }
    let compat = "/usr/lib/x86_64-linux-gnu/libgnutls-openssl.so.27";
    if let Some(elf) = system_elf("gnutls_openssl", compat) {
        let Some(TlsLibrary::OpenSsl { flavor, functions }) = tls_library(&elf) else {
            panic!(
                "libgnutls-openssl defines SSL_read: {:?}",
                tls_library(&elf)
            );
        };
        assert_eq!(flavor, OpenSslFlavor::GnuTlsCompat);
        // It defines only the pair (no _ex, no SSL_do_handshake), over gnutls_record_*.
        assert_eq!(names(&functions), vec!["SSL_read", "SSL_write"]);
        assert_eq!(imported_tls(&elf), vec![ImportedTls::GnuTls]);
    }
}

#[test]
fn a_library_with_neither_is_none() {
    for path in ["/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "/usr/bin/true"] {
        if !Path::new(path).exists() {
            continue;
        }
        let elf = Elf::open(Path::new(path)).expect(path);
        assert_eq!(tls_library(&elf), None, "{path}");
    }
}

/// No BoringSSL with visible symbols is on this machine (gRPC's Python module links it
/// hidden and stripped), so the rule is checked on a stand-in library defining the pair and
/// a BoringSSL-only function.
#[test]
fn boringssl_is_told_by_its_own_functions() {
    if !crate::attach::binary::testutil::have("cc") {
        skip("boringssl", "no C compiler");
        return;
    }
    let source = r"
int SSL_read(void *ssl, void *buf, int num) { (void)ssl; (void)buf; return num; }
int SSL_write(void *ssl, const void *buf, int num) { (void)ssl; (void)buf; return num; }
void SSL_CTX_set_custom_verify(void *ctx, int mode, void *cb) { (void)ctx; (void)mode; (void)cb; }
";
    let path = crate::attach::binary::testutil::cc(
        "boring-standin.so",
        source,
        &["-shared", "-fPIC", "-O1"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let elf = Elf::open(&path).expect("stand-in");
    let Some(TlsLibrary::OpenSsl { flavor, functions }) = tls_library(&elf) else {
        panic!("defines SSL_read and SSL_write");
    };
    assert_eq!(flavor, OpenSslFlavor::BoringSsl);
    assert_eq!(names(&functions), vec!["SSL_read", "SSL_write"]);
}
