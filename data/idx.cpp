// IDX reading, gzip-compressed or raw. The file is opened as a regular file only (InputFile:
// a FIFO or a directory is refused at once instead of hanging), and gzip is inflated here with
// zlib's inflate rather than its gz* API, for two reasons: gz* silently ignores whatever follows
// the last gzip member (so garbage appended to a download was accepted), and it hides how many
// compressed bytes were consumed. A gzip file may hold several members back to back
// (`gzip -c a b > c`; RFC 1952 §2.2: "a series of members"): they are read as one stream, as
// gunzip does. Anything after the last member that is not another member is refused.
//
// Memory is bounded by the file, not by its header: the payload buffer starts at what the file
// can hold (a raw file's size; for gzip, the trailer's ISIZE when it agrees with the header, and
// never more than deflate's maximum ratio times the compressed size) and grows only as data
// arrives, so a header claiming 2^26 images in a 100-byte file costs kilobytes before it is
// refused as truncated.
#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <new>
#include <sstream>

#include "base/check.h"
#include "base/input_file.h"

namespace kd {
namespace data {
namespace {

constexpr int64_t kMaxDim = 2147483647;            // dims are stored as uint32; keep them int-sized
constexpr int64_t kMaxPayload = int64_t(1) << 36;  // 64 GiB: anything larger is a corrupt header
// The largest image side the IDX image reader accepts (the same bound as --pad-to): batches hold
// whole images per thread, so a 2^15 x 2^15 "image" would fail far from the file that caused it.
constexpr int64_t kMaxImageSide = 4096;
// deflate's best case is 1032:1 (zlib's "technical details"); more decompressed bytes than this
// times the compressed size cannot come out of a file, whatever its header says.
constexpr int64_t kMaxDeflateRatio = 1032;
constexpr size_t kInputChunk = size_t(1) << 18;    // compressed bytes read per syscall
constexpr int64_t kFirstGrowth = int64_t(1) << 20;  // first buffer when the size is unknown

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

// The decompressed (or raw) bytes of one file, read in order. Every zlib error becomes an
// InputError naming the file.
class IdxStream {
 public:
  explicit IdxStream(const std::string& path) : file_(path), path_(path) {
    in_.resize(kInputChunk);
    in_have_ = file_.read(in_.data(), in_.size());
    in_pos_ = 0;
    eof_ = in_have_ < in_.size();
    gzip_ = in_have_ >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_) {
      std::memset(&z_, 0, sizeof z_);
      // 15 + 16: a gzip wrapper only (no zlib or raw deflate), full window.
      if (inflateInit2(&z_, 15 + 16) != Z_OK)
        throw Error(path_ + ": cannot allocate zlib's inflate state");
      z_open_ = true;
    }
  }
  ~IdxStream() {
    if (z_open_) inflateEnd(&z_);
  }
  IdxStream(const IdxStream&) = delete;
  IdxStream& operator=(const IdxStream&) = delete;

  bool gzip() const { return gzip_; }
  int64_t file_size() const { return file_.size(); }

  // The gzip trailer's ISIZE (the last member's length mod 2^32); -1 for a raw file or when the
  // file is too short to have one.
  int64_t isize_hint() const {
    if (!gzip_ || file_.size() < 18) return -1;
    uint8_t b[4];
    if (::pread(file_.fd(), b, 4, file_.size() - 4) != 4) return -1;
    return int64_t(b[0]) | int64_t(b[1]) << 8 | int64_t(b[2]) << 16 | int64_t(b[3]) << 24;
  }

  // Reads up to len bytes, stopping early only at the end of the data. Returns the count.
  size_t read(void* buf, size_t len) {
    const size_t got = gzip_ ? inflate_into(static_cast<uint8_t*>(buf), len)
                             : copy_into(static_cast<uint8_t*>(buf), len);
    total_ += static_cast<int64_t>(got);
    return got;
  }

  // Reads and counts everything left (for the trailing-garbage message).
  int64_t drain() {
    std::vector<uint8_t> buf(1 << 16);
    int64_t extra = 0;
    for (;;) {
      const size_t r = read(buf.data(), buf.size());
      extra += static_cast<int64_t>(r);
      if (r < buf.size()) return extra;
    }
  }

  int64_t total() const { return total_; }
  // True once the file ended inside a gzip member.
  bool cut_short() const { return cut_short_; }
  // Appended to "truncated" messages so a damaged .gz is told apart from a short IDX payload.
  std::string cut_note() const {
    return cut_short_ ? " (gzip stream ends early: unexpected end of file)" : "";
  }

 private:
  // Refills the input buffer when it is used up; false at the end of the file.
  bool refill() {
    if (in_pos_ < in_have_) return true;
    if (eof_) return false;
    consumed_before_ += static_cast<int64_t>(in_have_);
    in_have_ = file_.read(in_.data(), in_.size());
    in_pos_ = 0;
    eof_ = in_have_ < in_.size();
    return in_have_ > 0;
  }

  size_t copy_into(uint8_t* out, size_t len) {
    size_t got = 0;
    while (got < len && refill()) {
      const size_t n = std::min(len - got, in_have_ - in_pos_);
      std::memcpy(out + got, in_.data() + in_pos_, n);
      in_pos_ += n;
      got += n;
    }
    return got;
  }

  size_t inflate_into(uint8_t* out, size_t len) {
    size_t got = 0;
    while (got < len && !finished_) {
      if (member_done_) {
        start_next_member_or_finish();
        continue;
      }
      // At the end of the file inflate may still hold output for us; only when it can make no
      // progress without input has the file ended inside a member.
      const bool have_input = refill();
      z_.next_in = in_.data() + in_pos_;
      z_.avail_in = static_cast<uInt>(in_have_ - in_pos_);
      z_.next_out = out + got;
      z_.avail_out = static_cast<uInt>(std::min<size_t>(len - got, size_t(1) << 30));
      const uInt before_out = z_.avail_out;
      const int rc = inflate(&z_, Z_NO_FLUSH);
      got += before_out - z_.avail_out;
      in_pos_ = in_have_ - z_.avail_in;
      if (!have_input && rc != Z_STREAM_END && z_.avail_out == before_out) {
        cut_short_ = true;
        finished_ = true;
        break;
      }
      if (rc == Z_STREAM_END) {
        member_done_ = true;
      } else if (rc == Z_MEM_ERROR) {
        throw Error(path_ + ": out of memory in zlib's inflate");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw InputError(path_ + ": corrupt gzip stream: " + (z_.msg ? z_.msg : zError(rc)) +
                         " (after " + std::to_string(total_ + int64_t(got)) +
                         " decompressed bytes)");
      }
    }
    return got;
  }

  // After a member's trailer: the file ends, or another member starts, or what follows is
  // refused as trailing garbage.
  void start_next_member_or_finish() {
    member_done_ = false;
    if (!refill()) {
      finished_ = true;
      return;
    }
    const int64_t offset = consumed_before_ + static_cast<int64_t>(in_pos_);
    uint8_t magic[2] = {in_[in_pos_], 0};
    bool have_two = in_pos_ + 1 < in_have_;
    if (have_two) {
      magic[1] = in_[in_pos_ + 1];
    } else if (!eof_) {  // the second byte is in the next chunk
      have_two = ::pread(file_.fd(), &magic[1], 1, offset + 1) == 1;
    }
    if (!have_two || magic[0] != 0x1f || magic[1] != 0x8b) {
      throw InputError(path_ + ": trailing garbage after the gzip stream: " +
                       std::to_string(file_.size() - offset) + " bytes at offset " +
                       std::to_string(offset) + " are not a gzip member");
    }
    if (inflateReset(&z_) != Z_OK) throw Error(path_ + ": zlib's inflateReset failed");
  }

  InputFile file_;
  std::string path_;
  std::vector<uint8_t> in_;
  size_t in_have_ = 0, in_pos_ = 0;
  int64_t consumed_before_ = 0;  // file bytes before in_[0]
  bool eof_ = false, gzip_ = false;
  z_stream z_;
  bool z_open_ = false, member_done_ = false, finished_ = false;
  int64_t total_ = 0;
  bool cut_short_ = false;
};

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// How many payload bytes to make room for before reading: all of them when the file can hold
// them (a raw file of the right size, a gzip file whose trailer agrees), else a little, grown as
// data arrives.
int64_t first_reservation(const IdxStream& in, int64_t header_bytes, int64_t payload) {
  if (!in.gzip()) return std::min(payload, std::max<int64_t>(0, in.file_size() - header_bytes));
  const int64_t most = kMaxDeflateRatio * in.file_size();
  const int64_t isize = in.isize_hint();
  const bool agrees = isize >= 0 && ((header_bytes + payload) & 0xFFFFFFFF) == isize;
  return std::min({payload, most, agrees ? payload : kFirstGrowth});
}

// Resizes `data` to `bytes`, turning an allocation failure into one line naming the file.
void grow(std::vector<uint8_t>& data, int64_t bytes, const std::string& path, int64_t payload) {
  try {
    data.resize(static_cast<size_t>(bytes));
  } catch (const std::bad_alloc&) {
    throw Error(path + ": out of memory allocating " + std::to_string(bytes) +
                " bytes for the IDX payload (the header promises " + std::to_string(payload) +
                ")");
  }
}

}  // namespace

IdxArray read_idx_u8(const std::string& path, uint32_t expected_magic) {
  IdxStream in(path);
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
    KD_INPUT_CHECK(expected_magic != kIdxMagicImagesU8 || d == 0 || size <= kMaxImageSide,
                   path << ": images of " << size << (d == 1 ? " rows" : " columns")
                        << ", expected 1.." << kMaxImageSide);
    payload *= size;
    out.dims.push_back(size);
  }

  // Read into a buffer that starts at what the file can hold and doubles while data keeps
  // coming, so a lying header costs at most about twice the bytes really there.
  const int64_t expected_total = header_bytes + payload;
  int64_t have = 0, room = first_reservation(in, header_bytes, payload);
  for (;;) {
    grow(out.data, room, path, payload);
    have += static_cast<int64_t>(in.read(out.data.data() + have, size_t(room - have)));
    if (have < room || room == payload) break;
    room = std::min(payload, std::max(2 * room, kFirstGrowth));
  }
  KD_INPUT_CHECK(have == payload, path << ": truncated: expected " << expected_total
                                       << " bytes, got " << in.total() << in.cut_note());
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
