// Fuzz target: the CIFAR binary reader (data/cifar.h). The first byte picks the layout (even:
// CIFAR-10, one label byte; odd: CIFAR-100, coarse and fine label bytes); the rest is the file.
#include "data/cifar.h"
#include "tests/fuzz/fuzz_target.h"

KD_FUZZ_TARGET(cifar) {
  if (size < 1) return;
  const kd::data::CifarFormat format =
      (data[0] & 1) ? kd::data::kCifar100Format : kd::data::kCifar10Format;
  const std::string path = kd::fuzz::write_scratch("batch.bin", data + 1, size - 1);
  // What every loaded Dataset promises (shape, byte count, label range): a plain kd::Error if not.
  kd::data::read_cifar({path}, format, "fuzz").validate();
}
