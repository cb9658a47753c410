// Files the daemons write into folders others may write too (journal snapshots, ready files):
// created anew with their final mode from the first byte, never through a link or into a file
// someone planted at the name.
#pragma once

#include <sys/types.h>

#include <string>

namespace rfaas::net {

// Opens `path` for writing as a new file of `mode` (O_CREAT|O_EXCL|O_NOFOLLOW); whatever was at
// the name (a stale file of ours, a planted symlink) is removed first, never followed. Returns
// the descriptor; throws std::runtime_error naming the path.
int create_new_file(const std::string& path, mode_t mode);

// Writes `text` to `path`.tmp (as above) and renames it over `path`: readers see the whole text
// or nothing. Throws std::runtime_error.
void publish_file(const std::string& path, const std::string& text, mode_t mode = 0644);

}  // namespace rfaas::net
