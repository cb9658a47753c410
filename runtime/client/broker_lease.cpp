// The client side of the lease broker: ask for a lease, renew it, give it back. Every request
// carries a MUNGE credential of this process's user (runtime/auth).
#include <cstdlib>

#include "auth/munge_credential.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"
#include "rfaas/client.hpp"

namespace rfaas {

namespace {

protocol::ControlMessage ask(const std::string& broker, protocol::BrokerType type, const nlohmann::json& body,
                             std::chrono::milliseconds timeout) {
  try {
    auto s = net::TcpStream::connect(net::HostPort::parse(broker), net::deadline_in(timeout));
    std::string msg =
        protocol::make_message(type, auth::with_credential_for(s.peer_address(), protocol::to_string(type), body));
    s.send_frame(msg.data(), msg.size(), net::deadline_in(timeout));
    auto reply = protocol::ControlMessage::parse(s.recv_frame(protocol::kMaxControlFrame, net::deadline_in(timeout)));
    if (reply.is(protocol::BrokerType::error)) {
      auto code = protocol::control_errc_from_string(reply.body.value("code", "internal"));
      Errc e = code == protocol::ControlErrc::no_capacity     ? Errc::no_capacity
               : code == protocol::ControlErrc::malformed     ? Errc::invalid_argument
               : code == protocol::ControlErrc::policy        ? Errc::invalid_argument
               : code == protocol::ControlErrc::lease_expired ? Errc::lease_expired
               : code == protocol::ControlErrc::bad_token     ? Errc::bad_token
               : code == protocol::ControlErrc::not_authenticated ? Errc::not_authenticated
               : code == protocol::ControlErrc::not_permitted     ? Errc::not_permitted
                                                              : Errc::protocol;
      throw Error(e, "lease broker: " + reply.body.value("message", std::string()));
    }
    return reply;
  } catch (const net::NetError& e) {
    throw Error(Errc::connection_failed, "lease broker " + broker + ": " + e.what());
  } catch (const protocol::MessageError& e) {
    throw Error(Errc::protocol, std::string("lease broker: ") + e.what());
  } catch (const auth::AuthError& e) {
    throw Error(Errc::not_authenticated, std::string("lease broker request: ") + e.what());
  }
}

LeaseGrant grant_from(const protocol::LeaseGranted& g) {
  LeaseGrant out{g.daemon_address, g.token, g.lease_id, g.expires_at_ms, ""};
  try {
    out.node = nlohmann::json::parse(g.token).get<protocol::LeaseToken>().executor;
  } catch (const std::exception& e) {
    throw Error(Errc::protocol, std::string("lease broker sent a token that does not parse: ") + e.what());
  }
  return out;
}

}  // namespace

LeaseGrant broker_lease(const std::string& broker_address, const BrokerLeaseOptions& o) {
  const char* job = std::getenv("SLURM_JOB_ID");
  protocol::LeaseAsk a{o.cores, o.memory_bytes, o.duration.count(), o.client, o.avoid_nodes, job ? job : ""};
  auto reply = ask(broker_address, protocol::BrokerType::lease, a, o.timeout);
  if (!reply.is(protocol::BrokerType::lease_granted)) throw Error(Errc::protocol, "lease broker answered '" + reply.type + "'");
  return grant_from(reply.as<protocol::LeaseGranted>());
}

LeaseGrant broker_renew(const std::string& broker_address, const LeaseGrant& grant, std::chrono::milliseconds duration,
                        std::chrono::milliseconds timeout) {
  if (duration.count() <= 0) throw Error(Errc::invalid_argument, "broker_renew: duration must be positive");
  protocol::LeaseRenewAsk a;
  try {
    a.token = nlohmann::json::parse(grant.token).get<protocol::LeaseToken>();
  } catch (const std::exception& e) {
    throw Error(Errc::invalid_argument, std::string("broker_renew: not a lease token: ") + e.what());
  }
  a.duration_ms = duration.count();
  auto reply = ask(broker_address, protocol::BrokerType::renew, a, timeout);
  if (!reply.is(protocol::BrokerType::lease_renewed)) throw Error(Errc::protocol, "lease broker answered '" + reply.type + "'");
  LeaseGrant renewed = grant_from(reply.as<protocol::LeaseGranted>());
  if (renewed.daemon_address.empty()) renewed.daemon_address = grant.daemon_address;
  return renewed;
}

void broker_release(const std::string& broker_address, uint64_t lease_id, std::chrono::milliseconds timeout) {
  ask(broker_address, protocol::BrokerType::release, {{"lease_id", lease_id}}, timeout);
}

}  // namespace rfaas
