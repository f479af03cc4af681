#include <gtest/gtest.h>

#include "http/sse.hpp"

using gh::sse::Decoder;
using gh::sse::Event;

TEST(Sse, EncodesMultiLineData) {
  EXPECT_EQ(gh::sse::encode("a\nb", "7"), "event: message\nid: 7\ndata: a\ndata: b\n\n");
  EXPECT_EQ(gh::sse::encode("{}", "", ""), "data: {}\n\n");
  // CR, CRLF and LF each end a line for the reader: each starts another data: line (nothing is cut off).
  EXPECT_EQ(gh::sse::encode("a\rb\r\nc\n\rd", "", ""), "data: a\ndata: b\ndata: c\ndata: \ndata: d\n\n");
}

TEST(Sse, DecodesAcrossChunkBoundariesAndLineEndings) {
  Decoder d;
  std::vector<Event> got;
  auto cb = [&](Event&& e) { got.push_back(std::move(e)); };
  std::string stream = "event: endpoint\r\ndata: /messages?s=1\r\n\r\n: comment\n\nid: 5\ndata: {\"a\":1}\ndata: x\r\n\r\n";
  for (char c : stream) ASSERT_TRUE(d.feed(std::string_view(&c, 1), cb));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].event, "endpoint");
  EXPECT_EQ(got[0].data, "/messages?s=1");
  EXPECT_EQ(got[1].event, "message");
  EXPECT_EQ(got[1].data, "{\"a\":1}\nx");
  EXPECT_EQ(got[1].id, "5");
}

TEST(Sse, EventWithoutDataIsNotDispatched) {
  Decoder d;
  int n = 0;
  ASSERT_TRUE(d.feed("id: 1\n\nretry: 100\n\n", [&](Event&&) { ++n; }));
  EXPECT_EQ(n, 0);
  EXPECT_EQ(d.last_event_id(), "1");
}

TEST(Sse, OversizedEventIsRejected) {
  Decoder d(16);
  EXPECT_FALSE(d.feed("data: 0123456789012345678901234567890\n", [](Event&&) {}));
}
