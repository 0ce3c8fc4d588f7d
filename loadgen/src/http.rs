//! The HTTP/1.1 client side of a bid: requests rendered once before the
//! run, response heads parsed with `httparse` straight from the
//! connection's buffer.
//!
//! Only what a bidder speaks: `Content-Length` framing, keep-alive, one
//! request in flight per connection (exchanges open many connections rather
//! than pipeline, and a late answer on a pipelined connection would hold up
//! every request behind it).

use std::io::Write as _;

use gavel_schemas::capture::ContentType;

use crate::limits::{RESPONSE_BODY_BYTES_MAX, RESPONSE_HEAD_BYTES_MAX, RESPONSE_HEADERS_MAX};

/// Appends a complete `POST /bid` request to `out`.
pub fn render_request(out: &mut Vec<u8>, host: &str, content_type: ContentType, body: &[u8]) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "POST /bid HTTP/1.1\r\nHost: {host}\r\nContent-Type: {}\r\n\
         x-openrtb-version: 2.6\r\nContent-Length: {}\r\n\r\n",
        content_type.mime(),
        body.len()
    );
    out.extend_from_slice(body);
}

/// A parsed response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the status line, headers and blank line.
    pub head_len: usize,
    pub body_len: usize,
    /// The server will close the connection after this response.
    pub close: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)`: incomplete.
/// The error says what is wrong with the response.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > RESPONSE_HEAD_BYTES_MAX => {
            return Err(format!(
                "response head over the {RESPONSE_HEAD_BYTES_MAX}-byte limit"
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed HTTP response: {e}")),
    };
    if head_len > RESPONSE_HEAD_BYTES_MAX {
        return Err(format!(
            "response head over the {RESPONSE_HEAD_BYTES_MAX}-byte limit"
        ));
    }
    let status = response.code.unwrap_or(0);
    let mut close = response.version == Some(0);
    let mut content_length = None;
    for header in response.headers.iter() {
        let value = header.value.trim_ascii();
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| "invalid Content-Length in the response".to_string())?;
            if content_length.is_some_and(|seen| seen != len) {
                return Err("conflicting Content-Length headers in the response".into());
            }
            content_length = Some(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("response uses Transfer-Encoding; the load generator reads \
                 Content-Length framed responses only"
                .into());
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    let body_len = match status {
        // Interim answers: nothing asked for one.
        100..=199 => return Err(format!("unexpected interim response {status}")),
        // No body by definition (RFC 9110 section 6.4.1).
        204 | 304 => 0,
        _ => content_length.ok_or_else(|| {
            format!("response {status} has no Content-Length; the load generator needs it to frame answers")
        })?,
    };
    if body_len > RESPONSE_BODY_BYTES_MAX {
        return Err(format!(
            "response body of {body_len} bytes is over the {RESPONSE_BODY_BYTES_MAX}-byte limit"
        ));
    }
    Ok(Some(ResponseHead {
        status,
        head_len,
        body_len,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_bid_post() {
        let mut out = Vec::new();
        render_request(&mut out, "127.0.0.1:8080", ContentType::Json, b"{}");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut request = httparse::Request::new(&mut headers);
        let head_len = match request.parse(&out).unwrap() {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => panic!("incomplete"),
        };
        assert_eq!(request.method, Some("POST"));
        assert_eq!(request.path, Some("/bid"));
        assert_eq!(&out[head_len..], b"{}");
    }

    #[test]
    fn parses_heads() {
        let ok = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!((ok.status, ok.body_len, ok.close), (200, 5, false));
        assert_eq!(ok.head_len, 38);
        let no_bid = parse_response_head(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (no_bid.status, no_bid.body_len, no_bid.close),
            (204, 0, true)
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Le"),
            Ok(None)
        );
    }

    #[test]
    fn rejects_what_it_cannot_frame() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                parse_response_head(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX: {}",
            "a".repeat(RESPONSE_HEAD_BYTES_MAX)
        );
        assert!(parse_response_head(huge.as_bytes()).is_err());
    }
}
