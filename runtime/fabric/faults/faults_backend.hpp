// The faults decorator: any backend, with failures injected at chosen operations (after
// libfabric's hook providers). Rules, separated by commas, each firing once, at the Nth operation
// of its class in the domain (1-based):
//
//   writes (write_imm, counted together once they go: a write the backend answers with `again`
//   is retried by its caller and counted then):
//     drop_write@N       reported sent here, never delivered: a lost write
//     fail_write@N       write_imm returns Errc::io
//     delay_write=MS@N   held MS ms, then written (issued from poll or wait once due)
//     corrupt_imm@N      delivered with its immediate's bits flipped
//     lose_peer@N        the connection ends here: the endpoint under it is destroyed (the peer
//                        sees it lost), this and later writes fail with peer_lost, poll says so
//   set-up: fail_register@N, fail_listen@N, fail_connect@N, fail_accept@N   throw Error(io)
//
// Chosen by Config::faults (RFAAS_FABRIC=faults:<backend>, the rules in RFAAS_FABRIC_FAULTS).
// Each rule that fires says so on stderr ("rfaas fabric faults: drop_write@3"), so a test can
// tell the fault from a real failure.
#pragma once

#include <memory>
#include <string>

#include "rfaas/fabric/fabric.hpp"

namespace rfaas::fabric::faults {

// Wraps `inner` with the rules in `spec`; throws Error(invalid_argument) naming a rule that does
// not parse.
std::unique_ptr<Domain> wrap(std::unique_ptr<Domain> inner, const std::string& spec);

}  // namespace rfaas::fabric::faults
