// Storage results: every storage call that touches the disk returns a Status that says what
// failed and why (path, errno text). A storage error is never swallowed or turned into success.
#pragma once

#include <string>
#include <utility>

namespace ticketd::storage {

class Status {
 public:
  enum class Code { kOk, kNotFound, kCorrupt, kIo, kInvalid };

  Status() = default;
  static Status ok() { return Status(); }
  static Status not_found(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status corrupt(std::string msg) { return Status(Code::kCorrupt, std::move(msg)); }
  static Status invalid(std::string msg) { return Status(Code::kInvalid, std::move(msg)); }
  // `what` names the call and the path; `err` is the errno value (positive).
  static Status io(const std::string& what, int err);

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace ticketd::storage
