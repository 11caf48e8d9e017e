// run_folder.h: the output folder of one training run (./train_mnist --out DIR).
//
// RunFolder folder(dir) at start-up, before any real work:
//   - creates dir if absent (one level, as mkdir; it remembers that it did);
//   - checks that it is a writable folder by creating and removing a file in it (root
//     ignores permission bits, so asking access() would not do); a file, a path under a
//     file, a missing parent or a read-only filesystem is refused at once, naming the path;
//   - takes an exclusive lock: flock on dir/.lock, which holds the owner's pid. A second
//     RunFolder on the same folder, in any process, throws an error naming that pid. The
//     kernel drops the lock when its holder exits or is killed, so a lock is never stale;
//   - removes temp files left by dead writers: any "<name>.tmp.<pid>" (write_file_atomic's
//     temp files: checkpoints, samples.png, loss.svg) whose pid is no longer alive.
// Then claim(start_step, ...) checks that the folder holds no checkpoint after the step this
// run starts from (a fresh run starts at 0, so any checkpoint), because this run would mix
// its checkpoints with them and replace some. It refuses with advice (--resume auto --out
// DIR, another --out, or --overwrite); with overwrite it moves them aside into
// dir/previous-<k>/ (and, for a fresh run, the old figures too): nothing is deleted.
//
// Pruning (--keep K): prune() removes only checkpoints this process wrote (wrote()),
// never one it did not write: not another run's, and not one from before a --resume. A
// resumed run thus leaves the checkpoints of its earlier segments (at most K each) for the
// user to remove; that needs no run id in the checkpoints and cannot lose another run's.
//
// The destructor releases the lock; if this RunFolder created the folder and it still
// holds nothing but the lock (a run that failed before writing anything), it removes the
// folder again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// "<dir>/ckpt-<step, 8 digits>.safetensors".
std::string checkpoint_path(const std::string& dir, int64_t step);
// The checkpoints ckpt-<8 digits>.safetensors in dir, newest (highest step) first; not the
// writers' temp files. An absent folder has none.
std::vector<std::string> list_checkpoints(const std::string& dir);
// The step in a checkpoint name (..../ckpt-00000012.safetensors -> 12).
int64_t checkpoint_step(const std::string& path);

// Creates dir if absent and checks that a file can be created in it. Returns whether it
// created the folder. Errors name the path and `flag` (e.g. "--out") and say what to do.
bool ensure_writable_dir(const std::string& dir, const std::string& flag = "--out");

// Removes every "<name>.tmp.<pid>" in dir whose process <pid> no longer exists. Returns
// the names removed.
std::vector<std::string> remove_stale_temp_files(const std::string& dir);

class RunFolder {
 public:
  explicit RunFolder(const std::string& dir, const std::string& flag = "--out");
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

  const std::string& path() const { return dir_; }
  bool created() const { return created_; }

  // Refuses (ddpm::Error with the advice) when dir holds checkpoints after start_step,
  // unless overwrite, which moves them aside. Returns the folder they went to ("" if none).
  std::string claim(int64_t start_step, bool resuming, bool overwrite);
  // Records a checkpoint this process has written (atomically, so it is complete).
  void wrote(const std::string& checkpoint);
  // Removes this process's checkpoints but the newest `keep` and `newest` (the one just
  // written: it may sort below older ones after resuming from an older checkpoint).
  // Returns the paths removed.
  std::vector<std::string> prune(int64_t keep, const std::string& newest);

 private:
  std::string dir_, flag_;
  bool created_ = false;
  int lock_fd_ = -1;
  std::vector<std::string> written_;  // checkpoints this process wrote, still on disk
};

}  // namespace ddpm
