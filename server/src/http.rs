//! HTTP/1.1 framing for the bid port: request heads parsed with `httparse`
//! straight from the connection buffer, and responses written into a
//! reusable buffer. Only what a bidder needs: `Content-Length` bodies,
//! keep-alive, pipelining, gzip.

use std::io::Write as _;

use crate::metrics::{Format, RequestOutcome};

/// Most headers in one request. Exchanges send 5-15; pingora and nginx
/// defaults sit between 64 and 128. Over it the request is rejected (431).
pub const HEADERS_MAX: usize = 64;

/// Longest `x-openrtb-version` value echoed back.
const OPENRTB_VERSION_BYTES_MAX: usize = 16;

/// The route of a request on the bid port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Bid,
    MethodNotAllowed,
    NotFound,
}

/// What the bid path needs from a request head; no borrow of the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    pub route: Route,
    /// Bytes of the head (request line, headers, blank line).
    pub head_len: usize,
    pub body_len: usize,
    /// `Err` holds an unsupported Content-Type's outcome.
    pub format: Result<Format, ()>,
    pub gzip_body: bool,
    pub accepts_gzip: bool,
    pub keep_alive: bool,
    openrtb_version: [u8; OPENRTB_VERSION_BYTES_MAX],
    openrtb_version_len: u8,
}

impl Head {
    /// The request's `x-openrtb-version`, if it sent a short, printable one.
    pub fn openrtb_version(&self) -> Option<&[u8]> {
        (self.openrtb_version_len > 0)
            .then(|| &self.openrtb_version[..usize::from(self.openrtb_version_len)])
    }
}

/// A request the connection cannot continue after: answered, then closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fatal {
    pub status: u16,
    pub reason: &'static str,
    pub outcome: RequestOutcome,
}

const fn fatal(status: u16, reason: &'static str, outcome: RequestOutcome) -> Fatal {
    Fatal {
        status,
        reason,
        outcome,
    }
}

fn eq_ignore_case(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Whether a comma-separated header value lists `token`.
fn lists(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let item = trim(item);
        let name = item.split(|&b| b == b';').next().unwrap_or(item);
        eq_ignore_case(trim(name), token)
    })
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_head(
    buf: &[u8],
    header_bytes_max: usize,
    body_bytes_max: usize,
) -> Result<Option<Head>, Fatal> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > header_bytes_max {
                return Err(fatal(
                    431,
                    "request head too large",
                    RequestOutcome::HeaderTooLarge,
                ));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(fatal(
                431,
                "too many headers",
                RequestOutcome::HeaderTooLarge,
            ));
        }
        Err(_) => {
            return Err(fatal(
                400,
                "malformed HTTP request",
                RequestOutcome::BadRequest,
            ));
        }
    };
    if head_len > header_bytes_max {
        return Err(fatal(
            431,
            "request head too large",
            RequestOutcome::HeaderTooLarge,
        ));
    }
    let http_1_0 = request.version == Some(0);
    let mut head = Head {
        route: Route::NotFound,
        head_len,
        body_len: 0,
        format: Ok(Format::Json),
        gzip_body: false,
        accepts_gzip: false,
        keep_alive: !http_1_0,
        openrtb_version: [0; OPENRTB_VERSION_BYTES_MAX],
        openrtb_version_len: 0,
    };
    let mut content_length = None;
    for header in request.headers.iter() {
        let (name, value) = (header.name, trim(header.value));
        if name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
            match (len, content_length) {
                (None, _) => {
                    return Err(fatal(
                        400,
                        "invalid Content-Length",
                        RequestOutcome::BadRequest,
                    ));
                }
                (Some(a), Some(b)) if a != b => {
                    return Err(fatal(
                        400,
                        "conflicting Content-Length headers",
                        RequestOutcome::BadRequest,
                    ));
                }
                (Some(len), _) => content_length = Some(len),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Framing this server does not read: the body's end is unknown.
            return Err(fatal(
                411,
                "Transfer-Encoding is not supported; send Content-Length",
                RequestOutcome::LengthRequired,
            ));
        } else if name.eq_ignore_ascii_case("content-type") {
            let media = value
                .split(|&b| b == b';')
                .next()
                .map(trim)
                .unwrap_or_default();
            head.format = if eq_ignore_case(media, "application/json") {
                Ok(Format::Json)
            } else if eq_ignore_case(media, "application/x-flatbuffers") {
                Ok(Format::Flatbuffers)
            } else {
                Err(())
            };
        } else if name.eq_ignore_ascii_case("content-encoding") {
            if eq_ignore_case(value, "gzip") {
                head.gzip_body = true;
            } else if !eq_ignore_case(value, "identity") {
                head.format = Err(());
            }
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            head.accepts_gzip = lists(value, "gzip");
        } else if name.eq_ignore_ascii_case("connection") {
            if lists(value, "close") {
                head.keep_alive = false;
            } else if lists(value, "keep-alive") {
                head.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("x-openrtb-version")
            && value.len() <= OPENRTB_VERSION_BYTES_MAX
            && value.iter().all(|b| b.is_ascii_graphic())
        {
            head.openrtb_version[..value.len()].copy_from_slice(value);
            head.openrtb_version_len = value.len() as u8;
        }
    }
    let path = request.path.unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let is_post = request.method == Some("POST");
    head.route = match path {
        "/bid" if is_post => Route::Bid,
        "/bid" => Route::MethodNotAllowed,
        _ => Route::NotFound,
    };
    match content_length {
        Some(len) if len > body_bytes_max => Err(fatal(
            413,
            "request body too large",
            RequestOutcome::TooLarge,
        )),
        Some(len) => {
            head.body_len = len;
            Ok(Some(head))
        }
        None if is_post => Err(fatal(
            411,
            "Content-Length required",
            RequestOutcome::LengthRequired,
        )),
        None => Ok(Some(head)),
    }
}

pub fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response about to be written.
pub struct Response<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub gzip: bool,
    pub keep_alive: bool,
    pub openrtb_version: Option<&'a [u8]>,
    /// `Allow` header, for 405.
    pub allow: Option<&'a str>,
}

impl<'a> Response<'a> {
    pub fn text(status: u16, body: &'a str, keep_alive: bool) -> Self {
        Response {
            status,
            content_type: Some("text/plain; charset=utf-8"),
            body: body.as_bytes(),
            gzip: false,
            keep_alive,
            openrtb_version: None,
            allow: None,
        }
    }

    /// Appends the response to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            status_text(self.status)
        );
        if let Some(content_type) = self.content_type {
            let _ = write!(out, "Content-Type: {content_type}\r\n");
        }
        if self.gzip {
            out.extend_from_slice(b"Content-Encoding: gzip\r\n");
        }
        if let Some(version) = self.openrtb_version {
            out.extend_from_slice(b"x-openrtb-version: ");
            out.extend_from_slice(version);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(allow) = self.allow {
            let _ = write!(out, "Allow: {allow}\r\n");
        }
        if !self.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        out.extend_from_slice(self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<Head>, Fatal> {
        parse_head(raw.as_bytes(), 8192, 1 << 20)
    }

    #[test]
    fn reads_a_bid_post() {
        let head = parse(
            "POST /bid HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-flatbuffers\r\nContent-Length: 12\r\n\
             Accept-Encoding: br, gzip;q=0.8\r\nx-openrtb-version: 2.6\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.route, Route::Bid);
        assert_eq!(head.body_len, 12);
        assert_eq!(head.format, Ok(Format::Flatbuffers));
        assert!(head.accepts_gzip && head.keep_alive && !head.gzip_body);
        assert_eq!(head.openrtb_version(), Some(&b"2.6"[..]));
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_ones_fail() {
        assert!(parse("POST /bid HTTP/1.1\r\nContent-Le").unwrap().is_none());
        let long = format!("POST /bid HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(parse(&long).unwrap_err().status, 431);
        let many: String = (0..HEADERS_MAX + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n"))
                .unwrap_err()
                .status,
            431
        );
    }

    #[test]
    fn framing_errors() {
        assert_eq!(parse("POST /bid HTTP/1.1\r\n\r\n").unwrap_err().status, 411);
        assert_eq!(
            parse("POST /bid HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err()
                .status,
            411
        );
        assert_eq!(
            parse("POST /bid HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        let twice = "POST /bid HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse(twice).unwrap_err().status, 400);
        assert_eq!(
            parse("POST /bid HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n")
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(parse("\x00\x01 garbage\r\n\r\n").unwrap_err().status, 400);
    }

    #[test]
    fn routes_and_media_types() {
        assert_eq!(
            parse("GET /bid HTTP/1.1\r\n\r\n").unwrap().unwrap().route,
            Route::MethodNotAllowed
        );
        assert_eq!(
            parse("GET /other HTTP/1.1\r\n\r\n").unwrap().unwrap().route,
            Route::NotFound
        );
        let xml =
            parse("POST /bid HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(xml.format, Err(()));
        let br = parse("POST /bid HTTP/1.1\r\nContent-Encoding: br\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(br.format, Err(()));
        let old = parse("POST /bid HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!old.keep_alive);
        let close = parse("POST /bid HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close.keep_alive);
    }
}
