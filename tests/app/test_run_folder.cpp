// Tests for ddpm/app/run_folder.h (the lock, the start-up checks, the fresh-run refusal,
// pruning, stale temp files, the empty folder of a failed run) and for the atomic
// figure writers (a failed write leaves the previous file, never a partial one).
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ddpm/core/check.h"
#include "ddpm/io/png.h"
#include "ddpm/io/svg.h"
#include "ddpm/app/run_folder.h"
#include "tests/temp_dir.h"
#include "tests/testing.h"

using namespace ddpm;
using ddpm::testing::error_of;
using ddpm::testing::TempDir;

namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void touch(const std::string& path, const std::string& text = "x") {
  ddpm::testing::write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::string text_of(const std::string& path) {
  auto b = ddpm::testing::read_bytes(path);
  return std::string(b.begin(), b.end());
}

// A pid that existed and is gone: a child that exits at once, reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

}  // namespace

TEST_CASE("run_folder: creates the folder, and removes it again when the run wrote nothing") {
  TempDir tmp;
  const std::string out = tmp / "run";
  {
    RunFolder folder(out);
    CHECK(folder.created());
    CHECK(exists(out + "/.lock"));
  }
  CHECK(!exists(out));  // a failed run leaves no empty folder
  {
    RunFolder folder(out);
    touch(out + "/ckpt-00000001.safetensors");
  }
  CHECK(exists(out + "/ckpt-00000001.safetensors"));  // something was written: kept
  const std::string mine = tmp / "mine";
  ::mkdir(mine.c_str(), 0755);
  { RunFolder folder(mine); CHECK(!folder.created()); }
  CHECK(exists(mine));  // not ours to remove
}

TEST_CASE("run_folder: a file, a path under a file or a missing parent is refused at start, naming the path") {
  TempDir tmp;
  touch(tmp / "file");
  std::string e = error_of([&] { RunFolder f(tmp / "file"); });
  CHECK(e.find("--out '" + (tmp / "file") + "' exists and is not a folder") != std::string::npos);
  e = error_of([&] { RunFolder f(tmp / "file/sub"); });
  CHECK(e.find("a part of that path is a file") != std::string::npos);
  CHECK(e.find(tmp / "file/sub") != std::string::npos);
  e = error_of([&] { RunFolder f(tmp / "no/such"); });
  CHECK(e.find("mkdir -p " + (tmp / "no")) != std::string::npos);
  // The advice works: after mkdir -p of the parent, the folder is made.
  ::mkdir((tmp / "no").c_str(), 0755);
  CHECK(error_of([&] { RunFolder f(tmp / "no/such"); }) == "");
  CHECK(tmp.list() == std::vector<std::string>{"file", "no"});
}

TEST_CASE("run_folder: a second RunFolder on a locked folder stops at once, naming the holder's pid") {
  TempDir tmp;
  const std::string out = tmp / "run";
  int ready[2], release[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(release) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // holds the lock until told to go, or until killed
    char c = 0;
    try {
      RunFolder folder(out);
      c = 1;
      (void)!::write(ready[1], &c, 1);
      (void)!::read(release[0], &c, 1);
    } catch (...) {
      (void)!::write(ready[1], &c, 1);
    }
    ::_exit(0);
  }
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  REQUIRE(c == 1);
  const std::string e = error_of([&] { RunFolder second(out); });
  CHECK(e.find("another trainer (pid " + std::to_string(child) + ") is writing into '" + out + "'") !=
        std::string::npos);
  CHECK(e.find("choose another --out") != std::string::npos);
  // Killed, the holder's lock goes with it: the folder can be taken at once.
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(error_of([&] { RunFolder again(out); }) == "");
  ::close(ready[0]), ::close(ready[1]), ::close(release[0]), ::close(release[1]);
  // Within one process too (flock is per open file): the pid named is ours.
  RunFolder first(out);
  CHECK(error_of([&] { RunFolder second(out); }).find("(pid " + std::to_string(::getpid()) + ")") != std::string::npos);
}

TEST_CASE("run_folder: a fresh run into a folder with checkpoints is refused, with advice that works") {
  TempDir tmp;
  const std::string out = tmp / "run";
  ::mkdir(out.c_str(), 0755);
  touch(checkpoint_path(out, 2), "old2");
  touch(checkpoint_path(out, 4), "old4");
  touch(out + "/samples.png", "oldgrid");
  RunFolder folder(out);
  const std::string e = error_of([&] { folder.claim(0, false, false); });
  CHECK(e.find("already holds checkpoints of another run (2, the newest " + checkpoint_path(out, 4) + ")") !=
        std::string::npos);
  CHECK(e.find("--resume auto --out " + out) != std::string::npos);
  CHECK(e.find("--overwrite") != std::string::npos);
  // --resume auto resumes at the newest (4): nothing lies after it.
  CHECK(folder.claim(4, true, false) == "");
  // Resuming from an older one would replace step 4: refused, with the same advice.
  const std::string e2 = error_of([&] { folder.claim(2, true, false); });
  CHECK(e2.find("1 checkpoint(s) after step 2") != std::string::npos);
  CHECK(e2.find("--resume auto --out " + out) != std::string::npos);
  // --overwrite moves the old run aside; nothing is deleted.
  CHECK(folder.claim(0, false, true) == out + "/previous-1");
  CHECK(list_checkpoints(out).empty());
  CHECK(text_of(out + "/previous-1/ckpt-00000004.safetensors") == "old4");
  CHECK(text_of(out + "/previous-1/ckpt-00000002.safetensors") == "old2");
  CHECK(text_of(out + "/previous-1/samples.png") == "oldgrid");
  CHECK(folder.claim(0, false, false) == "");  // now a fresh run may start
}

TEST_CASE("run_folder: --keep prunes only checkpoints this process wrote") {
  TempDir tmp;
  const std::string out = tmp / "run";
  ::mkdir(out.c_str(), 0755);
  touch(checkpoint_path(out, 1), "foreign");  // e.g. from before a resume, or another run
  RunFolder folder(out);
  for (int64_t k = 2; k <= 6; k++) {
    touch(checkpoint_path(out, k));
    folder.wrote(checkpoint_path(out, k));
    folder.prune(2, checkpoint_path(out, k));
  }
  CHECK(list_checkpoints(out) ==
        std::vector<std::string>{checkpoint_path(out, 6), checkpoint_path(out, 5), checkpoint_path(out, 1)});
  CHECK(text_of(checkpoint_path(out, 1)) == "foreign");
  // The one just written is kept even when it sorts below older ones (a resume from an
  // older checkpoint).
  touch(checkpoint_path(out, 3));
  folder.wrote(checkpoint_path(out, 3));
  CHECK(folder.prune(1, checkpoint_path(out, 3)) ==
        std::vector<std::string>{checkpoint_path(out, 6), checkpoint_path(out, 5)});
  CHECK(list_checkpoints(out) == std::vector<std::string>{checkpoint_path(out, 3), checkpoint_path(out, 1)});
}

TEST_CASE("run_folder: stale temp files of dead pids are removed, a live writer's are kept") {
  TempDir tmp;
  const std::string out = tmp / "run";
  ::mkdir(out.c_str(), 0755);
  const std::string dead = std::to_string(dead_pid()), live = std::to_string(::getpid());
  for (const char* n : {"ckpt-00000003.safetensors", "samples.png", "loss.svg", "samples-00000002.png"}) {
    touch(out + "/" + n + ".tmp." + dead);
    touch(out + "/" + n + ".tmp." + live);
  }
  touch(out + "/notes.tmp.txt");  // not a temp name of a pid
  { RunFolder folder(out); }
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(out)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  CHECK(left == std::vector<std::string>{".lock", "ckpt-00000003.safetensors.tmp." + live, "loss.svg.tmp." + live,
                                         "notes.tmp.txt", "samples-00000002.png.tmp." + live,
                                         "samples.png.tmp." + live});
}

TEST_CASE("figures: a failed write (file size limit) leaves the previous loss.svg and grid, never a partial file") {
  TempDir tmp;
  const std::string svg = tmp / "loss.svg", png = tmp / "samples.png";
  touch(svg, "previous plot");
  touch(png, "previous grid");
  PlotSeries s{"loss", {}, {}, ""};
  for (int k = 1; k <= 2000; k++) {
    s.x.push_back(k);
    s.y.push_back(1.0 / k);
  }
  const Tensor images = Tensor::full({16, 1, 28, 28}, 0.5f);
  // A file size limit of 4 KB, as `ulimit -f 4` (the writes are larger): EFBIG, with
  // SIGXFSZ ignored as the trainer does. Root is subject to it too.
  struct rlimit saved;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string e_svg = error_of([&] { write_line_plot(svg, {s}, PlotOptions{}); });
  const std::string e_png = error_of([&] { write_image_grid(png, images, 4); });
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  CHECK(e_svg.find(svg) != std::string::npos);
  CHECK(e_png.find(png) != std::string::npos);
  CHECK(text_of(svg) == "previous plot");
  CHECK(text_of(png) == "previous grid");
  CHECK(tmp.list() == std::vector<std::string>{"loss.svg", "samples.png"});  // no temp file left
  // And without the limit both are written whole.
  write_line_plot(svg, {s}, PlotOptions{});
  CHECK(text_of(svg).find("</svg>") != std::string::npos);
}
