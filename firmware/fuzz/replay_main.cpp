// Replays fuzz inputs through LLVMFuzzerTestOneInput without libFuzzer, so that
// the corpus runs as a plain test under g++ with ASan and UBSan.
//
//   fuzz_replay FILE_OR_DIR...     (a directory: every regular file in it)
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool replay_file(const std::string& path) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) {
    fprintf(stderr, "cannot open %s\n", path.c_str());
    return false;
  }
  std::vector<uint8_t> data;
  uint8_t buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  fclose(f);
  LLVMFuzzerTestOneInput(data.data(), data.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "no such file or directory: %s\n", argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (!replay_file(argv[i])) return 1;
      ++replayed;
      continue;
    }
    DIR* dir = opendir(argv[i]);
    if (dir == nullptr) return 1;
    std::vector<std::string> names;
    while (struct dirent* entry = readdir(dir)) {
      const std::string path = std::string(argv[i]) + "/" + entry->d_name;
      struct stat est;
      if (stat(path.c_str(), &est) == 0 && S_ISREG(est.st_mode)) names.push_back(path);
    }
    closedir(dir);
    for (const std::string& path : names) {
      if (!replay_file(path)) return 1;
      ++replayed;
    }
  }
  printf("replayed %zu inputs, no finding\n", replayed);
  return replayed > 0 ? 0 : 1;  // an empty corpus is an error, not a pass
}
