// IDX reading through zlib's gz* API, which reads .gz and raw files alike. zlib passes non-gzip
// bytes through silently and signals a cut or corrupt gzip stream only through gzerror, so every
// gzread is followed by a gzerror check, and one extra read after the payload proves that the
// stream (including the gzip trailer with its CRC) ends exactly where the header says.
// A cut stream (Z_BUF_ERROR) is only noted when seen: zlib has usually decompressed ahead, and
// reading on until the data runs out lets the message say how many bytes were really there.
#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "base/check.h"

namespace kd {
namespace data {
namespace {

constexpr int64_t kMaxDim = 2147483647;            // dims are stored as uint32; keep them int-sized
constexpr int64_t kMaxPayload = int64_t(1) << 36;  // 64 GiB: anything larger is a corrupt header

std::string hex32(uint32_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(8) << std::setfill('0') << v;
  return os.str();
}

std::string describe_magic(uint32_t magic) {
  if (magic == kIdxMagicImagesU8) return "IDX uint8 images";
  if (magic == kIdxMagicLabelsU8) return "IDX uint8 labels";
  return "IDX uint8 " + std::to_string(magic & 0xFF) + "-D";
}

// Owns a gzFile; reads fully or reports how far it got; turns every zlib error into InputError.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      const int err = errno;
      throw InputError(path + ": cannot open: " +
                       (err != 0 ? std::strerror(err) : "zlib could not allocate its state"));
    }
    gzbuffer(file_, 1 << 18);  // fewer syscalls on 26 MB files; must precede the first read
  }
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads up to len bytes, stopping early only at the end of the data. Returns the count.
  size_t read(void* buf, size_t len) {
    size_t got = 0;
    while (got < len) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(len - got, size_t(1) << 30));
      const int r = gzread(file_, static_cast<char*>(buf) + got, chunk);
      if (r > 0) got += static_cast<size_t>(r);
      check_stream(total_ + got);
      KD_INPUT_CHECK(r >= 0, path_ << ": read failed after " << total_ + got << " bytes");
      if (static_cast<unsigned>(r) < chunk) break;
    }
    total_ += got;
    return got;
  }

  // Reads and counts everything left (for the trailing-garbage message).
  int64_t drain() {
    std::vector<char> buf(1 << 16);
    int64_t extra = 0;
    for (;;) {
      const size_t r = read(buf.data(), buf.size());
      extra += static_cast<int64_t>(r);
      if (r < buf.size()) return extra;
    }
  }

  int64_t total() const { return total_; }
  // True once zlib has hit the end of the file inside the gzip stream.
  bool cut_short() const { return cut_short_; }
  // Appended to "truncated" messages so a damaged .gz is told apart from a short IDX payload.
  std::string cut_note() const {
    return cut_short_ ? " (gzip stream ends early: unexpected end of file)" : "";
  }

 private:
  void check_stream(int64_t decompressed_so_far) {
    int errnum = Z_OK;
    const char* msg = gzerror(file_, &errnum);
    if (errnum == Z_OK) return;
    std::string what = msg != nullptr ? msg : "";
    // zlib prefixes its messages with the path; we add the path ourselves.
    const std::string prefix = path_ + ": ";
    if (what.compare(0, prefix.size(), prefix) == 0) what.erase(0, prefix.size());
    if (errnum == Z_BUF_ERROR) {  // still readable: zlib returns what it decompressed
      cut_short_ = true;
      return;
    }
    if (errnum == Z_ERRNO) {
      throw InputError(path_ + ": read error: " + std::strerror(errno));
    }
    throw InputError(path_ + ": corrupt gzip stream: " + what + " (after " +
                     std::to_string(decompressed_so_far) + " decompressed bytes)");
  }

  std::string path_;
  gzFile file_ = nullptr;
  int64_t total_ = 0;
  bool cut_short_ = false;
};

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

IdxArray read_idx_u8(const std::string& path, uint32_t expected_magic) {
  GzReader in(path);
  uint8_t word[4];
  size_t got = in.read(word, 4);
  KD_INPUT_CHECK(got == 4, path << ": truncated: expected at least 4 bytes (the IDX magic), got "
                                << got << in.cut_note());
  const uint32_t magic = read_be32(word);
  KD_INPUT_CHECK(magic == expected_magic, path << ": bad magic " << hex32(magic) << ", expected "
                                               << hex32(expected_magic) << " ("
                                               << describe_magic(expected_magic) << ")");

  const int rank = static_cast<int>(magic & 0xFF);
  const int64_t header_bytes = 4 + 4 * static_cast<int64_t>(rank);
  IdxArray out;
  int64_t payload = 1;
  for (int d = 0; d < rank; ++d) {
    got = in.read(word, 4);
    KD_INPUT_CHECK(got == 4, path << ": truncated: header needs " << header_bytes << " bytes, got "
                                  << in.total() << in.cut_note());
    const int64_t size = read_be32(word);
    KD_INPUT_CHECK(size >= 1 && size <= kMaxDim, path << ": dimension " << d << " has size " << size
                                                      << ", expected 1.." << kMaxDim);
    // Checked before the multiply: the product of a few 2^31 dimensions overflows int64.
    KD_INPUT_CHECK(size <= kMaxPayload / payload, path << ": header dimensions give more than "
                                                       << kMaxPayload << " bytes; corrupt header?");
    payload *= size;
    out.dims.push_back(size);
  }

  const int64_t expected_total = header_bytes + payload;
  out.data.resize(static_cast<size_t>(payload));
  got = in.read(out.data.data(), out.data.size());
  KD_INPUT_CHECK(static_cast<int64_t>(got) == payload, path << ": truncated: expected "
                                                            << expected_total << " bytes, got "
                                                            << in.total() << in.cut_note());
  const int64_t extra = in.drain();
  KD_INPUT_CHECK(extra == 0, path << ": trailing garbage: expected " << expected_total
                                  << " bytes, got " << expected_total + extra);
  KD_INPUT_CHECK(!in.cut_short(), path << ": truncated gzip stream: all " << expected_total
                                       << " bytes are there but the gzip trailer is cut short");
  return out;
}

IdxImages read_idx_images(const std::string& path) {
  IdxArray a = read_idx_u8(path, kIdxMagicImagesU8);
  IdxImages out;
  out.n = static_cast<int>(a.dims[0]);
  out.h = static_cast<int>(a.dims[1]);
  out.w = static_cast<int>(a.dims[2]);
  out.pixels = std::move(a.data);
  return out;
}

std::vector<int32_t> read_idx_labels(const std::string& path, int num_classes) {
  KD_INPUT_CHECK(num_classes >= 1, path << ": num_classes must be >= 1, got " << num_classes);
  IdxArray a = read_idx_u8(path, kIdxMagicLabelsU8);
  std::vector<int32_t> labels(a.data.begin(), a.data.end());
  for (size_t i = 0; i < labels.size(); ++i) {
    KD_INPUT_CHECK(labels[i] < num_classes, path << ": label " << labels[i] << " at index " << i
                                                 << " is out of range [0, " << num_classes << ")");
  }
  return labels;
}

Dataset load_idx(const std::string& images_path, const std::string& labels_path, int num_classes,
                 const std::string& name) {
  IdxImages images = read_idx_images(images_path);
  std::vector<int32_t> labels = read_idx_labels(labels_path, num_classes);
  KD_INPUT_CHECK(static_cast<int64_t>(labels.size()) == images.n,
                 labels_path << ": count mismatch: " << labels.size() << " labels, but "
                             << images_path << " has " << images.n << " images");
  Dataset ds;
  ds.n = images.n;
  ds.c = 1;
  ds.h = images.h;
  ds.w = images.w;
  ds.images = std::move(images.pixels);
  ds.labels = std::move(labels);
  ds.num_classes = num_classes;
  ds.name = name.empty() ? images_path : name;
  return ds;
}

Dataset load_idx_split(const std::string& dir, bool train, const std::string& name) {
  const std::string base = dir + "/" + (train ? "train" : "t10k");
  return load_idx(base + "-images-idx3-ubyte.gz", base + "-labels-idx1-ubyte.gz", 10,
                  name + (train ? "-train" : "-test"));
}

}  // namespace data
}  // namespace kd
