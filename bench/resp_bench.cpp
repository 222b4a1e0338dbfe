// Micro-benchmarks of the RESP parser and reply writer on the TICKET hot path.
#include <benchmark/benchmark.h>

#include <string>

#include "ticketd/resp/parser.h"
#include "ticketd/resp/writer.h"

namespace {

using ticketd::resp::ParseStatus;
using ticketd::resp::Parser;

// Parses a pipeline of 16 `TICKET` multibulk commands one at a time, as a connection does
// after one recv; items/s counts commands.
void BM_ParsePipeline16Tickets(benchmark::State& state) {
  std::string pipeline;
  for (int i = 0; i < 16; ++i) pipeline += "*1\r\n$6\r\nTICKET\r\n";
  Parser parser;
  for (auto _ : state) {
    std::string_view rest = pipeline;
    size_t commands = 0;
    while (!rest.empty()) {
      size_t consumed = 0;
      if (parser.parse(rest, &consumed) != ParseStatus::kOk) {
        state.SkipWithError("parse failed");
        return;
      }
      commands += ticketd::resp::iequals(parser.args()[0], "TICKET");
      rest.remove_prefix(consumed);
    }
    benchmark::DoNotOptimize(commands);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 16);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * pipeline.size()));
}
BENCHMARK(BM_ParsePipeline16Tickets);

void BM_ParseInlineTicket(benchmark::State& state) {
  const std::string line = "TICKET\r\n";
  Parser parser;
  for (auto _ : state) {
    size_t consumed = 0;
    benchmark::DoNotOptimize(parser.parse(line, &consumed));
    benchmark::DoNotOptimize(parser.args().data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseInlineTicket);

// One TICKET reply appended to a reused, reserved buffer (cleared every 256 replies).
void BM_WriteTicketReply(benchmark::State& state) {
  std::string out;
  out.reserve(64 * 1024);
  uint64_t ticket = 1'000'000'000'000ULL;
  int n = 0;
  for (auto _ : state) {
    ticketd::resp::append_simple_u64(out, ticket++);
    if (++n == 256) {
      benchmark::DoNotOptimize(out.data());
      out.clear();
      n = 0;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_WriteTicketReply);

// A 1 MiB bulk arriving in 16 KiB pieces, re-parsed after each piece: the cost must grow
// with the number of pieces, not with bytes^2 (payloads are skipped by length).
void BM_ParseLargeBulkIn16KiBPieces(benchmark::State& state) {
  const std::string header = "*2\r\n$6\r\nUPLOAD\r\n$1048576\r\n";
  const std::string wire = header + std::string(1 << 20, 'x') + "\r\n";
  Parser parser;
  for (auto _ : state) {
    size_t consumed = 0;
    for (size_t have = 16 * 1024; have < wire.size(); have += 16 * 1024) {
      benchmark::DoNotOptimize(parser.parse(std::string_view(wire).substr(0, have), &consumed));
    }
    if (parser.parse(wire, &consumed) != ParseStatus::kOk) {
      state.SkipWithError("parse failed");
      return;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseLargeBulkIn16KiBPieces);

}  // namespace
