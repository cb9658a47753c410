// One message with one file descriptor attached (SCM_RIGHTS) over a Unix stream socket: how
// the executor daemon hands a standby executor its lease and its function library.
#pragma once

#include <string>

#include "net/tcp_socket.hpp"

namespace rfaas::net {

// Sends [4-byte length | bytes] with `fd` attached (none when fd < 0). Throws NetError.
void send_with_fd(int sock, const std::string& bytes, int fd);
// Receives one such message; `fd` gets the attached descriptor (or -1). Blocks until a
// message or EOF (NetError closed); `max` bounds its size (NetError too_large).
std::string recv_with_fd(int sock, size_t max, int* fd);

}  // namespace rfaas::net
