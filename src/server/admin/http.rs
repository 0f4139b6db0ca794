//! The sliver of HTTP/1.1 the admin endpoint speaks: parse a request line, write a response
//! with a length and `Connection: close`.

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
}

/// Whether `head` holds a whole request head (ends with an empty line).
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Parses the request line of `head`; `Err(status)` for a malformed or unsupported one.
pub fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let line_end = head.iter().position(|&b| b == b'\n').ok_or(400u16)?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| 400u16)?;
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(505);
    }
    if method.is_empty() || !target.starts_with('/') {
        return Err(400);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// A response to write.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// Status line, headers and (unless answering HEAD) the body.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_gives_method_and_path_without_query() {
        let r = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/metrics".into()
            }
        );
    }

    #[test]
    fn malformed_request_lines_are_refused() {
        assert_eq!(parse_request(b"GET\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET metrics HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET / HTTP/2\r\n\r\n"), Err(505));
        assert_eq!(parse_request(b"\xff\xfe / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"no newline"), Err(400));
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn response_carries_length_and_closes() {
        let bytes = Response::text(404, "nope\n").to_bytes(false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Content-Length: 5\r\nConnection: close\r\n\r\nnope\n"));
        let head = String::from_utf8(Response::text(200, "x").to_bytes(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }
}
