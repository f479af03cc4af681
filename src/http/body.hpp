// Reading a message body that has already arrived: shared by the server (requests) and the upstream client
// (answers). Kept out of stream.hpp, which nearly every file includes, for Beast's read templates.
#pragma once
#include <boost/beast/http/read.hpp>
#include <boost/system/error_code.hpp>

namespace gh::http {

// Parses the body at once when all of it (its Content-Length) is already in `buffer`, as a small message that
// came in one segment with its head is: Beast's asynchronous read would queue its completion even then, one
// more trip through the scheduler. Returns false when the body still has to be read.
template <class SyncReadStream, class Buffer, class Parser>
bool parse_buffered_body(SyncReadStream& s, Buffer& buffer, Parser& parser, boost::system::error_code& ec) {
  auto cl = parser.content_length();
  if (parser.is_done() || !cl || buffer.size() < *cl) return false;
  boost::beast::http::read(s, buffer, parser, ec);
  return true;
}

}  // namespace gh::http
