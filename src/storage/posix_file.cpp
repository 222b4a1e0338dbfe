#include "ticketd/storage/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "ticketd/base/check.h"

namespace ticketd::storage {

Status Status::io(const std::string& what, int err) {
  return Status(Code::kIo, what + ": " + std::strerror(err));
}

AlignedBuffer::AlignedBuffer(size_t bytes) : size_(round_up_block(bytes)) {
  if (size_ == 0) return;
  void* p = std::aligned_alloc(kBlockBytes, size_);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, size_);
  data_ = static_cast<std::byte*>(p);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

Status open_file(const std::string& path, int flags, bool try_direct, bool refuse_direct, int* fd,
                 bool* direct) {
  *fd = -1;
  *direct = false;
  if (try_direct) {
    int f = refuse_direct ? -1 : ::open(path.c_str(), flags | O_DIRECT | O_CLOEXEC, 0644);
    int err = refuse_direct ? EINVAL : errno;
    if (f >= 0) {
      *fd = f;
      *direct = true;
      return Status::ok();
    }
    if (err != EINVAL) return Status::io("open(O_DIRECT) " + path, err);
    // EINVAL: this filesystem refuses O_DIRECT; fall through to buffered I/O.
  }
  int f = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (f < 0) return Status::io("open " + path, errno);
  *fd = f;
  return Status::ok();
}

Status write_fully(int fd, const void* buf, size_t len, uint64_t offset, bool dsync,
                   const std::string& what) {
  const char* p = static_cast<const char*>(buf);
  while (len > 0) {
    iovec iov{const_cast<char*>(p), len};
    ssize_t n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset), dsync ? RWF_DSYNC : 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::io("write " + what, errno);
    }
    if (n == 0) return Status::io("write " + what, EIO);
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status read_fully(int fd, void* buf, size_t len, uint64_t offset, const std::string& what) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::io("read " + what, errno);
    }
    if (n == 0) return Status::corrupt("read " + what + ": unexpected end of file");
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::ok();
}

Status read_whole_file(const std::string& path, std::vector<std::byte>* out) {
  out->clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::not_found(path + " does not exist");
    return Status::io("open " + path, errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::io("fstat " + path, err);
  }
  out->resize(static_cast<size_t>(st.st_size));
  Status s = read_fully(fd, out->data(), out->size(), 0, path);
  ::close(fd);
  return s;
}

Status fdatasync_fd(int fd, const std::string& what) {
  if (::fdatasync(fd) != 0) return Status::io("fdatasync " + what, errno);
  return Status::ok();
}

Status fsync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return Status::io("fsync " + what, errno);
  return Status::ok();
}

Status sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::io("open dir " + dir, errno);
  Status s = fsync_fd(fd, "dir " + dir);
  ::close(fd);
  return s;
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace ticketd::storage
