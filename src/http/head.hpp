// The head of an HTTP/1.1 message that arrived whole, parsed in one pass over bytes in memory, for the shape
// nearly every client and upstream writes. Beast's parser (basic_parser) validates a byte at a time and, behind
// request_parser, files every field in a tree of allocated nodes: with the upstream's answer head it was the
// largest single cost of a proxied call. Whatever falls outside the shape below is left to Beast's parser,
// which reads the same bytes and knows every corner of RFC 9112 (and answers its errors): these functions
// return 0 and the caller takes that path. Every head they accept, Beast accepts with the same parts
// (tests/unit/head_test.cpp compares them on mutated heads).
//
// The shape: start line; fields `name ":" OWS value OWS CRLF` (name a token; value bytes HTAB, SP, VCHAR or
// obs-text); the empty line. Not: obs-fold, a bare CR or LF, Transfer-Encoding, Expect, Upgrade or
// "Connection: upgrade", more than one Content-Length or one that is not plain digits, HTTP versions other
// than 1.0 and 1.1.
#pragma once
#include <cstdint>
#include <string_view>

namespace gh::http {

class Request;

// Each returns the length of the head at the start of `buffered` (through its empty line), or 0 when it is
// outside the shape or has not all arrived.

// Fills `out` (its body untouched) and the body's length (0 without Content-Length).
std::size_t parse_request_head(std::string_view buffered, Request& out, std::uint64_t& content_length);

// The parts of an upstream's answer head the gateway acts on (valid while the bytes they view are).
struct ResponseHead {
  unsigned status = 0;
  std::string_view content_type;
  std::string_view session_id;  // Mcp-Session-Id
};

// For an answer to a request other than HEAD. Also requires a known body length: Content-Length, or none for
// 204 and 304 (1xx heads go to Beast). `out` views `buffered`.
std::size_t parse_response_head(std::string_view buffered, ResponseHead& out, std::uint64_t& body_length,
                                bool& keep_alive);

}  // namespace gh::http
