// Scratch directories for storage tests and benchmarks: a fresh mkdtemp directory removed with
// everything in it on destruction, plus whole-file helpers used to cut and corrupt files on
// purpose. Never use it for real data: the destructor deletes the tree.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace ticketd::storage::scratch {

// Base directory for scratch data: $TICKETD_STORAGE_TEST_DIR if set (e.g. a dir under the build
// tree on ext4, to exercise O_DIRECT), else /tmp.
inline std::string scratch_base() {
  const char* env = std::getenv("TICKETD_STORAGE_TEST_DIR");
  return env != nullptr && env[0] != '\0' ? env : "/tmp";
}

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& base = scratch_base()) {
    std::string templ = base + "/ticketd-storage-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    char* p = ::mkdtemp(buf.data());
    if (p != nullptr) path_ = p;
  }
  ~ScratchDir() {
    if (!path_.empty()) remove_tree(path_);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  static void remove_tree(const std::string& dir) {
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n == "." || n == "..") continue;
        std::string p = dir + "/" + n;
        struct stat st {};
        if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
          remove_tree(p);
        } else {
          ::unlink(p.c_str());
        }
      }
      ::closedir(d);
    }
    ::rmdir(dir.c_str());
  }

 private:
  std::string path_;
};

inline std::vector<std::byte> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  for (size_t i = 0; i < c.size(); ++i) out[i] = static_cast<std::byte>(c[i]);
  return out;
}

inline void write_bytes(const std::string& path, const std::vector<std::byte>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// Deterministic record payload for (index, term): tests can verify every byte after recovery.
// Bytes are never zero, so zeroing any part of a payload always changes it.
inline std::vector<std::byte> payload_for(uint64_t index, uint64_t term, size_t len) {
  std::vector<std::byte> p(len);
  for (size_t i = 0; i < len; ++i) {
    p[i] = static_cast<std::byte>(1 + ((index * 31 + term * 7 + i) % 250));
  }
  return p;
}

inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  return names;
}

}  // namespace ticketd::storage::scratch
