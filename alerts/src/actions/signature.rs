//! `X-Graylens-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>`
//! (DESIGN.md "Webhook contract").

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header value signing `body` with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret` (constant-time compare).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_test_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let s = sign(b"k", b"{}");
        assert!(verify(b"k", b"{}", &s));
        assert!(verify(
            b"k",
            b"{}",
            &s.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify(b"other", b"{}", &s));
        assert!(!verify(b"k", b"{ }", &s));
        assert!(!verify(b"k", b"{}", s.trim_start_matches("sha256=")));
    }
}
