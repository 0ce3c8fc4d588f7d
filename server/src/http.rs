//! HTTP/1.1 framing for both ports: one request-head parser (`httparse`
//! underneath) that reads straight from the connection buffer, and
//! responses written into a reusable buffer. Only what a bidder and its
//! admin API need: `Content-Length` bodies, keep-alive, pipelining, gzip.
//! Strict where laxness lets two readers disagree about where a request
//! ends (RFC 9112 section 6.3, 11.2): bare LF line ends, signed or
//! conflicting lengths and `Transfer-Encoding` are refused.

use std::io::Write as _;

use crate::metrics::{Format, RequestOutcome};

/// Most headers in one request. Exchanges send 5-15; pingora and nginx
/// defaults sit between 64 and 128. Over it the request is rejected (431).
pub const HEADERS_MAX: usize = 64;

/// Longest `x-openrtb-version` value echoed back.
const OPENRTB_VERSION_BYTES_MAX: usize = 16;

/// Longest `Content-Length` value: 19 digits always fit a `u64`.
const CONTENT_LENGTH_DIGITS_MAX: usize = 19;

/// A request's method, as far as either port cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Other,
}

impl Method {
    fn parse(method: &str) -> Self {
        match method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

/// Where a value sits in the buffer the head was parsed from: heads hold
/// no borrow, so they can travel with the request's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(buf: &[u8], part: &[u8]) -> Self {
        // `part` is a subslice of `buf` (httparse borrows from it), so the
        // offset is in range; heads are far below 4 GiB.
        let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
        Span {
            start: start as u32,
            len: part.len() as u32,
        }
    }

    /// The bytes in `buf`, which must be the buffer the head came from.
    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let start = self.start as usize;
        buf.get(start..start + self.len as usize)
            .unwrap_or_default()
    }

    pub fn get_str<'b>(&self, buf: &'b [u8]) -> &'b str {
        std::str::from_utf8(self.get(buf)).unwrap_or_default()
    }
}

/// A parsed request head; no borrow of the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    pub method: Method,
    /// The request target: path and query.
    pub target: Span,
    /// Bytes of the head (request line, headers, blank line).
    pub head_len: usize,
    pub body_len: usize,
    /// `Err(())`: a Content-Type or Content-Encoding the bid port does not
    /// read.
    pub format: Result<Format, ()>,
    pub gzip_body: bool,
    pub accepts_gzip: bool,
    pub keep_alive: bool,
    /// The `Authorization` header's value (admin port).
    pub authorization: Option<Span>,
    openrtb_version: [u8; OPENRTB_VERSION_BYTES_MAX],
    openrtb_version_len: u8,
}

impl Head {
    /// The request's `x-openrtb-version`, if it sent a short, printable one.
    pub fn openrtb_version(&self) -> Option<&[u8]> {
        (self.openrtb_version_len > 0)
            .then(|| &self.openrtb_version[..usize::from(self.openrtb_version_len)])
    }

    /// The path and the query string (empty without `?`).
    pub fn path_and_query<'b>(&self, buf: &'b [u8]) -> (&'b str, &'b str) {
        let target = self.target.get_str(buf);
        target.split_once('?').unwrap_or((target, ""))
    }
}

/// The size limits a port parses with.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub header_bytes_max: usize,
    pub body_bytes_max: usize,
    /// A `POST` or `PUT` without `Content-Length` is refused (411) rather
    /// than read as an empty body: on the bid port an empty bid request is
    /// always a client's mistake.
    pub length_required: bool,
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

const HEAD_TOO_LARGE: Fatal = fatal(
    431,
    "request head too large",
    RequestOutcome::HeaderTooLarge,
);
const MALFORMED: Fatal = fatal(400, "malformed HTTP request", RequestOutcome::BadRequest);

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
/// The steps: frame the head, read the headers, check the body's framing.
pub fn parse_head(buf: &[u8], limits: HeadLimits) -> Result<Option<Head>, Fatal> {
    // Left uninitialized: httparse writes the headers it finds, and filling
    // 64 empty ones first cost more than parsing a typical head.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut []);
    let Some(head_len) = frame(&mut request, &mut headers, buf, limits.header_bytes_max)? else {
        return Ok(None);
    };
    let mut head = Head {
        method: Method::parse(request.method.unwrap_or("")),
        target: Span::of(buf, request.path.unwrap_or("/").as_bytes()),
        head_len,
        body_len: 0,
        format: Ok(Format::Json),
        gzip_body: false,
        accepts_gzip: false,
        keep_alive: request.version != Some(0),
        authorization: None,
        openrtb_version: [0; OPENRTB_VERSION_BYTES_MAX],
        openrtb_version_len: 0,
    };
    let content_length = read_headers(&mut head, request.headers, buf)?;
    head.body_len = body_length(head.method, content_length, limits)?;
    Ok(Some(head))
}

/// Finds the end of the head: `Ok(None)` while it is incomplete and under
/// the limit.
fn frame<'h, 'b>(
    request: &mut httparse::Request<'h, 'b>,
    headers: &'h mut [std::mem::MaybeUninit<httparse::Header<'b>>],
    buf: &'b [u8],
    header_bytes_max: usize,
) -> Result<Option<usize>, Fatal> {
    let head_len = match request.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > header_bytes_max => {
            return Err(HEAD_TOO_LARGE);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(fatal(
                431,
                "too many headers",
                RequestOutcome::HeaderTooLarge,
            ));
        }
        Err(_) => return Err(MALFORMED),
    };
    if head_len > header_bytes_max {
        return Err(HEAD_TOO_LARGE);
    }
    // httparse accepts a bare LF as a line end; a proxy in front may not,
    // and then the two disagree about where headers end.
    let head = &buf[..head_len];
    let bare_lf = memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r');
    if bare_lf {
        return Err(fatal(
            400,
            "malformed HTTP request: lines must end with CRLF",
            RequestOutcome::BadRequest,
        ));
    }
    Ok(Some(head_len))
}

/// Reads the headers either port uses into `head`; returns the
/// `Content-Length`, if any.
fn read_headers(
    head: &mut Head,
    headers: &[httparse::Header<'_>],
    buf: &[u8],
) -> Result<Option<usize>, Fatal> {
    let mut content_length = None;
    for header in headers {
        let (name, value) = (header.name, trim(header.value));
        if name.eq_ignore_ascii_case("content-length") {
            let len = parse_content_length(value).ok_or(fatal(
                400,
                "invalid Content-Length",
                RequestOutcome::BadRequest,
            ))?;
            if content_length.is_some_and(|earlier| earlier != len) {
                return Err(fatal(
                    400,
                    "conflicting Content-Length headers",
                    RequestOutcome::BadRequest,
                ));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Framing this server does not read: the body's end is unknown.
            return Err(fatal(
                411,
                "Transfer-Encoding (chunked bodies) is not supported; send Content-Length",
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
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(Span::of(buf, value));
        } else if name.eq_ignore_ascii_case("x-openrtb-version")
            && value.len() <= OPENRTB_VERSION_BYTES_MAX
            && value.iter().all(|b| b.is_ascii_graphic())
        {
            head.openrtb_version[..value.len()].copy_from_slice(value);
            head.openrtb_version_len = value.len() as u8;
        }
    }
    Ok(content_length)
}

/// `Content-Length` is 1*DIGIT (RFC 9110 section 8.6): no sign, no
/// spaces inside, no hex.
fn parse_content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty()
        || value.len() > CONTENT_LENGTH_DIGITS_MAX
        || !value.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn body_length(
    method: Method,
    content_length: Option<usize>,
    limits: HeadLimits,
) -> Result<usize, Fatal> {
    match content_length {
        Some(len) if len > limits.body_bytes_max => Err(fatal(
            413,
            "request body too large",
            RequestOutcome::TooLarge,
        )),
        Some(len) => Ok(len),
        None if limits.length_required && matches!(method, Method::Post | Method::Put) => {
            Err(fatal(
                411,
                "Content-Length required",
                RequestOutcome::LengthRequired,
            ))
        }
        None => Ok(0),
    }
}

pub fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
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

    /// `204 No Content`: nobody bids (or the request was shed).
    pub fn no_content(keep_alive: bool, openrtb_version: Option<&'a [u8]>) -> Self {
        Response {
            status: 204,
            content_type: None,
            body: &[],
            gzip: false,
            keep_alive,
            openrtb_version,
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
        parse_head(
            raw.as_bytes(),
            HeadLimits {
                header_bytes_max: 8192,
                body_bytes_max: 1 << 20,
                length_required: true,
            },
        )
    }

    #[test]
    fn reads_a_bid_post() {
        let raw = "POST /bid?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-flatbuffers\r\nContent-Length: 12\r\n\
             Accept-Encoding: br, gzip;q=0.8\r\nx-openrtb-version: 2.6\r\nAuthorization: Bearer abc\r\n\r\n";
        let head = parse(raw).unwrap().unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path_and_query(raw.as_bytes()), ("/bid", "x=1"));
        assert_eq!(head.body_len, 12);
        assert_eq!(head.format, Ok(Format::Flatbuffers));
        assert!(head.accepts_gzip && head.keep_alive && !head.gzip_body);
        assert_eq!(head.openrtb_version(), Some(&b"2.6"[..]));
        assert_eq!(
            head.authorization.map(|a| a.get(raw.as_bytes())),
            Some(&b"Bearer abc"[..])
        );
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
        let status = |raw: &str| parse(raw).unwrap_err().status;
        assert_eq!(status("POST /bid HTTP/1.1\r\n\r\n"), 411);
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nContent-Length: \r\n\r\n"),
            400
        );
        let twice = "POST /bid HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(twice), 400);
        let same_twice = "POST /bid HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(parse(same_twice).unwrap().unwrap().body_len, 2);
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"),
            413
        );
        assert_eq!(status("\x00\x01 garbage\r\n\r\n"), 400);
        assert_eq!(
            status("POST /bid HTTP/1.1\nContent-Length: 0\n\n"),
            400,
            "bare LF"
        );
        assert_eq!(
            status("POST /bid HTTP/1.1\r\nContent-Length: 0\n\r\n"),
            400,
            "one bare LF"
        );
    }

    #[test]
    fn media_types_and_connection() {
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
        let get = parse("GET /healthz HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!((get.method, get.body_len), (Method::Get, 0));
    }
}
