// Users authenticate to the lease broker with MUNGE, the credential service Slurm uses: munged
// runs on every node with one key, a client encodes a credential (its uid and gid, a payload,
// a timestamp; munged signs it), the broker asks its own munged to decode it. munged refuses a
// credential it has already decoded (a replay), an expired one, and one made with another key.
// Cold path: one round trip to the local munged per broker request.
#pragma once

#include "rfaas/coded_error.hpp"
#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace rfaas::auth {

struct Identity {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

enum class AuthErrc {
  unavailable,  // munged cannot be reached (no socket, not running)
  invalid,      // not a credential, another key, or damaged
  replayed,     // decoded before
  expired,      // past its time-to-live (or from the future)
  missing,      // the request carries no credential
  mismatch,     // a valid credential, made for another request
};
const char* to_string(AuthErrc);

using AuthError = CodedError<AuthErrc>;

// The munged socket a client talks to: RFAAS_MUNGE_SOCKET if set, else "" (libmunge's
// default, /run/munge/munge.socket.2).
std::string client_socket();

// A credential for this process's uid and gid carrying `payload` (e.g. the digest of the request
// it authenticates). `socket` empty: libmunge's default. Throws AuthError.
std::string encode(const std::string& payload, const std::string& socket = client_socket());

// The encoder's identity; *payload gets what it carried. Throws AuthError naming the problem.
Identity decode(const std::string& credential, const std::string& socket, std::string* payload);

// Broker requests (protocol/broker_messages.hpp): the client adds a credential for exactly this
// request (its payload is protocol::request_digest of type and body), the broker checks it.
nlohmann::json with_credential(const std::string& type, nlohmann::json body,
                               const std::string& socket = client_socket());
Identity authenticate(const std::string& type, const nlohmann::json& body, const std::string& socket);
// The same, meant for the broker at `audience` (the address the client reached,
// TcpStream::peer_address): what every client request carries (protocol::kAudienceField).
nlohmann::json with_credential_for(const std::string& audience, const std::string& type, nlohmann::json body,
                                   const std::string& socket = client_socket());

}  // namespace rfaas::auth
