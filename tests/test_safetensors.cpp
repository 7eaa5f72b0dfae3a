// Tests for engine/safetensors and engine/atomic_file: round trips over every dtype (0-d and empty
// tensors too), a hand-built file that pins the byte format, the atomic-write protocol (no temp
// files left, whole replacement, failures leave nothing), and one refusal per malformed header.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/atomic_file.h"
#include "engine/safetensors.h"
#include "base/philox.h"

namespace fs = std::filesystem;
using kd::StEntry;
using kd::StFile;

// The build passes the source root; by hand, run from the repository root or set KD_GOLDEN_DIR.
#if defined(KDLAB_SOURCE_DIR)
#define KD_GOLDEN_DIR KDLAB_SOURCE_DIR "/tests/golden"
#else
#define KD_GOLDEN_DIR "tests/golden"
#endif

namespace {

class SafetensorsIO : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "kd_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing(const fs::path& where) const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(where)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

template <class T>
std::vector<T> random_values(size_t n, uint64_t salt, double lo, double hi) {
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) {
    double u = kd::philox_uniform_double(salt, kd::kStreamTest, i);
    v[i] = static_cast<T>(lo + (hi - lo) * u);
  }
  return v;
}

StFile sample_file() {
  StFile f;
  f.entries.push_back(kd::make_entry<float>("layer1.0.conv1.weight", {3, 5}, random_values<float>(15, 1, -1, 1)));
  f.entries.push_back(kd::make_entry<double>("x.f64", {2, 1, 3}, random_values<double>(6, 2, -1e3, 1e3)));
  f.entries.push_back(kd::make_entry<int64_t>("bn.num_batches_tracked", {}, {int64_t(1) << 40}));
  f.entries.push_back(kd::make_entry<float>("empty", {0, 3}, {}));
  f.entries.push_back(kd::make_entry<int32_t>("labels", {1, 7}, random_values<int32_t>(7, 3, -1e6, 1e6)));
  f.entries.push_back(kd::make_entry<uint8_t>("image", {5, 3}, random_values<uint8_t>(15, 4, 0, 255.9)));
  f.entries.push_back(kd::make_entry<double>("scalar", {}, {-0.125}));
  f.entries.push_back(kd::make_entry<int64_t>("empty1d", {0}, {}));
  f.metadata = {{"format", "pt"}, {"quote\"and\\slash", "line\nbreak"}, {"unicode", "τ=4 ü"}};
  return f;
}

// 8-byte little-endian length, the header text, then `buffer_bytes` zero bytes.
std::string raw_file(const std::string& header, size_t buffer_bytes, int64_t declared = -1) {
  uint64_t n = declared >= 0 ? static_cast<uint64_t>(declared) : header.size();
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + std::string(buffer_bytes, '\0');
}

}  // namespace

TEST_F(SafetensorsIO, RoundTripAllDtypesScalarsAndEmptyTensors) {
  StFile f = sample_file();
  std::string p = path("model.safetensors");
  kd::write_safetensors_atomic(p, f);
  StFile g = kd::read_safetensors(p);
  ASSERT_EQ(g.entries.size(), f.entries.size());
  for (size_t i = 0; i < f.entries.size(); ++i) {  // same order as written
    EXPECT_EQ(g.entries[i].name, f.entries[i].name);
    EXPECT_EQ(g.entries[i].dtype, f.entries[i].dtype);
    EXPECT_EQ(g.entries[i].shape, f.entries[i].shape);
    EXPECT_EQ(g.entries[i].bytes, f.entries[i].bytes) << f.entries[i].name;
  }
  EXPECT_EQ(g.metadata, f.metadata);
  EXPECT_EQ(kd::values<int64_t>(kd::require(g, "bn.num_batches_tracked", p))[0], int64_t(1) << 40);
  EXPECT_EQ(kd::values<double>(*kd::find(g, "scalar")), std::vector<double>{-0.125});
  EXPECT_TRUE(kd::values<float>(*kd::find(g, "empty")).empty());
  EXPECT_EQ(kd::find(g, "nope"), nullptr);
}

TEST_F(SafetensorsIO, HeaderIsAlignedAndOffsetsContiguousInGivenOrder) {
  StFile f = sample_file();
  std::string bytes = kd::encode_safetensors(f, "mem");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  auto header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  uint64_t cursor = 0;
  size_t i = 0;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    EXPECT_EQ(it.key(), f.entries[i].name);
    EXPECT_EQ(it.value()["data_offsets"][0].get<uint64_t>(), cursor);
    cursor = it.value()["data_offsets"][1].get<uint64_t>();
    ++i;
  }
  EXPECT_EQ(i, f.entries.size());
  EXPECT_EQ(8 + n + cursor, bytes.size());
  for (int len = 1; len <= 8; ++len) {  // every residue of the JSON length mod 8 needs padding
    StFile one;
    one.entries.push_back(kd::make_entry<uint8_t>(std::string(len, 'n'), {1}, {42}));
    std::string b = kd::encode_safetensors(one, "mem");
    EXPECT_EQ((b.size() - 1) % 8, 0u) << len;
    EXPECT_EQ(b[b.size() - 2], len == 4 ? '}' : ' ') << len;  // 4: JSON already 48 bytes
  }
}

TEST_F(SafetensorsIO, GoldenBytesOfTinyFile) {
  StFile f;
  f.entries.push_back(kd::make_entry<float>("w", {2}, {1.0f, -2.0f}));
  f.entries.push_back(kd::make_entry<int64_t>("s", {}, {7}));
  f.metadata["format"] = "pt";
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})"
      "      ";  // 138 bytes of JSON + 6 spaces = 144, a multiple of 8
  std::string expected("\x90\0\0\0\0\0\0\0", 8);  // 144
  expected += header;
  expected += std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);  // 1.0f, -2.0f
  expected += std::string("\x07\0\0\0\0\0\0\0", 8);                // int64 7
  ASSERT_EQ(expected.size(), 168u);
  std::string p = path("tiny.safetensors");
  kd::write_safetensors_atomic(p, f);
  EXPECT_EQ(slurp(p), expected);
  EXPECT_EQ(kd::values<float>(kd::read_safetensors(p).entries[0]), (std::vector<float>{1.0f, -2.0f}));
}

TEST_F(SafetensorsIO, ReadsForeignKeyOrderAndWhitespace) {
  // Other writers order keys differently and pad with spaces; entries still come back in buffer order.
  std::string header = R"({ "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]},)"
                       R"( "__metadata__": {"k": "v"}, "a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]} }   )";
  std::string bytes = raw_file(header, 0) + std::string("\x05\0\0\0\x09\x0a", 6);
  StFile f = kd::decode_safetensors(bytes, "mem");
  ASSERT_EQ(f.entries.size(), 2u);
  EXPECT_EQ(f.entries[0].name, "a");
  EXPECT_EQ(kd::values<int32_t>(f.entries[0]), std::vector<int32_t>{5});
  EXPECT_EQ(kd::values<uint8_t>(f.entries[1]), (std::vector<uint8_t>{9, 10}));
  EXPECT_EQ(f.metadata.at("k"), "v");
}

TEST_F(SafetensorsIO, TypedAccessorsRefuseWrongDtypeAndWidenToDouble) {
  StEntry e = kd::make_entry<float>("w", {3}, {0.5f, -1.5f, 2.0f});
  EXPECT_THROW(kd::values<double>(e), kd::InputError);
  EXPECT_EQ(kd::values_as_double(e), (std::vector<double>{0.5, -1.5, 2.0}));
  EXPECT_EQ(kd::values_as_double(kd::make_entry<int64_t>("i", {2}, {-3, 4})), (std::vector<double>{-3, 4}));
  EXPECT_THROW(kd::make_entry<float>("w", {2, 2}, {1.f}), kd::InputError);
  e.bytes.pop_back();
  EXPECT_THROW(kd::values<float>(e), kd::InputError);
  EXPECT_EQ(kd::dtype_size("F64"), 8u);
  EXPECT_EQ(kd::dtype_size("BF16"), 2u);
  const StEntry h = kd::make_entry<kd::bf16>("h", {2}, {kd::bf16{0x3f81}, kd::bf16{0xc020}});
  EXPECT_EQ(kd::values_as_double(h), (std::vector<double>{1.0078125, -2.5}));
  EXPECT_THROW(kd::dtype_size("F16"), kd::InputError);  // half precision: not read
  EXPECT_EQ(kd::numel({}), 1);
  EXPECT_EQ(kd::numel({4, 0, 3}), 0);
  EXPECT_THROW(kd::numel({2, -1}), kd::InputError);
}

TEST_F(SafetensorsIO, AtomicWriteReplacesWholeAndLeavesNoTempFiles) {
  std::string p = path("ckpt.safetensors");
  StFile big;
  big.entries.push_back(kd::make_entry<double>("w", {1000, 100}, std::vector<double>(100000, 3.0)));
  kd::write_safetensors_atomic(p, big);
  StFile small;
  small.entries.push_back(kd::make_entry<float>("v", {2}, {1.f, 2.f}));
  kd::write_safetensors_atomic(p, small);
  EXPECT_EQ(slurp(p), kd::encode_safetensors(small, p));  // no tail of the old, larger file
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"ckpt.safetensors"});
  struct stat st;
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  std::string csv = path("metrics.csv");
  std::string text("epoch,acc\n0,0.5\n\0binary", 23);
  kd::write_file_atomic(csv, text);
  ASSERT_EQ(::chmod(csv.c_str(), 0600), 0);
  kd::write_file_atomic(csv, text + "1,0.7\n");
  EXPECT_EQ(slurp(csv), text + "1,0.7\n");
  ASSERT_EQ(::stat(csv.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // a replaced file keeps its mode
  EXPECT_EQ(listing(dir_), (std::vector<std::string>{"ckpt.safetensors", "metrics.csv"}));
}

TEST_F(SafetensorsIO, WriteIntoMissingDirectoryThrowsAndLeavesNothing) {
  std::string p = path("no/such/dir/ckpt.safetensors");
  try {
    kd::write_safetensors_atomic(p, sample_file());
    FAIL() << "expected kd::InputError";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(listing(dir_).empty());
}

TEST_F(SafetensorsIO, FailedRenameRemovesTempFile) {
  // A directory squats on the target name: the temp file is fully written, then rename fails.
  std::string p = path("taken");
  fs::create_directory(p);
  try {
    kd::write_file_atomic(p, std::string(4096, 'x'));
    FAIL() << "expected kd::InputError";
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rename"), std::string::npos) << e.what();
  }
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"taken"});
  EXPECT_TRUE(fs::is_directory(p) && fs::is_empty(p));
}

TEST_F(SafetensorsIO, WriterRefusesInconsistentEntriesBeforeTouchingDisk) {
  struct Case {
    StEntry entry;
    const char* phrase;
  };
  std::vector<Case> cases = {
      {StEntry{"w", "F32", {2}, std::vector<uint8_t>(7)}, "needs 8"},
      {StEntry{"w", "F16", {2}, std::vector<uint8_t>(4)}, "unknown dtype 'F16'"},
      {StEntry{"w", "F32", {-1}, {}}, "negative dim"},
      {StEntry{"__metadata__", "U8", {0}, {}}, "reserved"},
      {StEntry{"", "U8", {0}, {}}, "empty name"},
  };
  std::string p = path("bad.safetensors");
  for (const Case& c : cases) {
    StFile f;
    f.entries.push_back(c.entry);
    try {
      kd::write_safetensors_atomic(p, f);
      ADD_FAILURE() << "no refusal for " << c.phrase;
    } catch (const kd::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(c.phrase), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  }
  StFile dup;
  dup.entries = {kd::make_entry<float>("a", {1}, {1.f}), kd::make_entry<float>("a", {1}, {2.f})};
  EXPECT_THROW(kd::write_safetensors_atomic(p, dup), kd::InputError);
  EXPECT_TRUE(listing(dir_).empty());
}

TEST_F(SafetensorsIO, ReaderRefusesEveryMalformedHeader) {
  const std::string f32a = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  struct Case {
    const char* label;
    std::string bytes;
    const char* phrase;
  };
  std::vector<Case> cases = {
      {"short", std::string("\x04\0\0", 3), "shorter than 8 bytes"},
      {"empty", "", "shorter than 8 bytes"},
      {"header_past_eof", raw_file("{}", 0, 1000), "exceeds the file size"},
      {"absurd_header", raw_file("{}", 0, int64_t(1) << 62), "absurd"},
      {"not_brace", raw_file("[1, 2]  ", 0), "does not start with '{'"},
      {"bad_json", raw_file(R"({"a": {"dtype": "F32",)", 0), "not valid JSON"},
      {"json_trailing_garbage", raw_file("{} x", 0), "not valid JSON"},
      // 100,000 nested lists once overflowed the stack (a segfault, not an error).
      {"deep_shape",
       raw_file(R"({"a":{"dtype":"F32","shape":)" + std::string(100000, '[') +
                    std::string(100000, ']') + R"(,"data_offsets":[0,4]}})", 4),
       "deeper than 64 levels"},
      {"deep_metadata",
       raw_file(R"({"__metadata__":{"k":)" + std::string(100000, '[') + std::string(100000, ']') +
                    "}}", 0),
       "deeper than 64 levels"},
      {"entry_not_object", raw_file(R"({"a": 5})", 0), "entry 'a' is not a JSON object"},
      {"missing_dtype", raw_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), "missing 'dtype'"},
      {"missing_shape", raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), "missing 'shape'"},
      {"missing_offsets", raw_file(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "missing 'data_offsets'"},
      {"unknown_field", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
       "unknown field 'x'"},
      {"dtype_not_string", raw_file(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4),
       "dtype is not a string"},
      {"unknown_dtype", raw_file(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4),
       "unknown dtype 'F16'"},
      {"shape_not_list", raw_file(R"({"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", 4),
       "shape is not a list"},
      {"shape_negative", raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
       "negative dimension"},
      {"shape_fraction", raw_file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
       "non-integer"},
      {"shape_overflow",
       raw_file(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4),
       "too large"},
      {"offsets_arity", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4),
       "is not [begin, end]"},
      {"offsets_negative", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
       "is not [begin, end]"},
      {"offsets_reversed", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4),
       "begin > end"},
      {"size_mismatch", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4),
       "needs 8 bytes"},
      {"beyond_buffer", raw_file("{" + f32a + "}", 2), "beyond the buffer of 2 bytes"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "overlapping data_offsets"},
      {"gap",
       raw_file("{" + f32a + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
       "gap in the buffer"},
      {"leading_gap", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "gap in the buffer"},
      {"trailing_bytes", raw_file("{" + f32a + "}", 8), "4 trailing bytes"},
      {"metadata_not_object", raw_file("{" + f32a + R"(,"__metadata__":[1]})", 4),
       "__metadata__ is not a JSON object"},
      {"metadata_value_not_string", raw_file("{" + f32a + R"(,"__metadata__":{"k":1}})", 4),
       "metadata value for 'k' is not a string"},
      {"duplicate_name", raw_file("{" + f32a + "," + f32a + "}", 4), "duplicate key 'a'"},
      {"duplicate_field", raw_file(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
       "duplicate key 'dtype'"},
  };
  for (const Case& c : cases) {
    std::string p = path(std::string("bad_") + c.label + ".safetensors");
    spit(p, c.bytes);
    try {
      kd::read_safetensors(p);
      ADD_FAILURE() << c.label << ": accepted";
    } catch (const kd::InputError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << c.label << ": " << msg;
      EXPECT_NE(msg.find(c.phrase), std::string::npos) << c.label << ": " << msg;
    }
  }
  spit(path("good.safetensors"), raw_file("{" + f32a + "}", 4));  // the base case is accepted
  EXPECT_EQ(kd::read_safetensors(path("good.safetensors")).entries.size(), 1u);
}

TEST_F(SafetensorsIO, ReaderRefusesMissingFileAndDirectory) {
  std::string missing = path("missing.safetensors");
  try {
    kd::read_safetensors(missing);
    FAIL();
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(missing + "': cannot open"), std::string::npos) << e.what();
  }
  try {
    kd::read_safetensors(dir_.string());
    FAIL();
  } catch (const kd::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

// tools/st.py writes the same canonical layout, so PyTorch-made golden files re-encode identically.
TEST(SafetensorsGolden, PythonWrittenFilesReencodeByteIdentical) {
  const char* env = std::getenv("KD_GOLDEN_DIR");
  fs::path dir = env ? env : KD_GOLDEN_DIR;
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no golden dir " << dir << " (set KD_GOLDEN_DIR)";
  int checked = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    std::string p = e.path().string();
    StFile f = kd::read_safetensors(p);
    EXPECT_FALSE(f.entries.empty()) << p;
    EXPECT_EQ(kd::encode_safetensors(f, p), slurp(p)) << p;
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no .safetensors files in " << dir;
}
