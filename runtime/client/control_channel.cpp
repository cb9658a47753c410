#include "client/control_channel.hpp"

#include <poll.h>

#include <algorithm>

namespace rfaas::client {

namespace {
using Clock = std::chrono::steady_clock;
[[noreturn]] void fail(Errc code, const std::string& what) { throw Error(code, what); }
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
}  // namespace

Errc from_control(protocol::ControlErrc c) noexcept {
  switch (c) {
    case protocol::ControlErrc::bad_token: return Errc::bad_token;
    case protocol::ControlErrc::lease_expired: return Errc::lease_expired;
    case protocol::ControlErrc::lease_active: return Errc::lease_in_use;
    case protocol::ControlErrc::lease_ended: return Errc::lease_expired;  // the token is spent
    case protocol::ControlErrc::no_capacity: return Errc::no_capacity;
    case protocol::ControlErrc::library_mismatch:
    case protocol::ControlErrc::library_load_failed: return Errc::library_load_failed;
    case protocol::ControlErrc::executor_failed: return Errc::executor_lost;
    case protocol::ControlErrc::malformed: return Errc::invalid_argument;
    case protocol::ControlErrc::memory_exceeded: return Errc::memory_exceeded;
    case protocol::ControlErrc::policy: return Errc::invalid_argument;
    case protocol::ControlErrc::not_authenticated: return Errc::not_authenticated;
    case protocol::ControlErrc::not_permitted: return Errc::not_permitted;
    case protocol::ControlErrc::internal: return Errc::protocol;
  }
  return Errc::protocol;
}

bool ControlChannel::read_frame(net::Deadline deadline, protocol::ControlMessage* out) {
  for (;;) {
    if (reader_.read_available(stream_)) {
      *out = protocol::ControlMessage::parse(reader_.frame());
      reader_ = net::FrameReader(protocol::kMaxControlFrame);
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{stream_.fd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
  }
}

Errc ControlChannel::note_end(const protocol::LeaseEnded& end) {
  usage_ = {end.usage.invocations, end.usage.hot_polling_ns, end.usage.compute_ns};
  switch (end.reason) {
    case protocol::LeaseEndReason::expired: ended_ = Errc::lease_expired; break;
    case protocol::LeaseEndReason::revoked: ended_ = Errc::lease_revoked; break;
    case protocol::LeaseEndReason::memory_exceeded: ended_ = Errc::memory_exceeded; break;  // the kernel's limit
    default: ended_ = Errc::executor_lost; break;
  }
  ended_text_ = std::string(protocol::to_string(end.reason)) + (end.detail.empty() ? "" : ": " + end.detail);
  return ended_;
}

protocol::Allocated ControlChannel::allocate(const std::string& daemon_address, const protocol::AllocateRequest& req,
                                             const std::vector<uint8_t>& library,
                                             const std::vector<std::vector<uint8_t>>& dependencies,
                                             std::chrono::milliseconds timeout, DeployTiming& timing) {
  timeout_ = timeout;
  auto t_phase = Clock::now();
  try {
    stream_ = net::TcpStream::connect(net::HostPort::parse(daemon_address), net::deadline_in(timeout));
    stream_.keep_alive(net::kKeepAliveIdle, net::kKeepAliveInterval, net::kKeepAliveProbes);
    std::string msg = protocol::make_message(protocol::ControlType::allocate, req);
    stream_.send_frame(msg.data(), msg.size(), net::deadline_in(timeout));
    timing.connect_ms = ms_since(t_phase);
    t_phase = Clock::now();
    for (;;) {
      protocol::ControlMessage reply;
      if (!read_frame(net::deadline_in(timeout * 2), &reply))
        throw net::NetError(net::NetErrc::timeout, "no answer to the allocate request");
      if (reply.is(protocol::ControlType::send_library)) {
        // Which one: the library (no body, or its hash), or one of its dependencies.
        const std::vector<uint8_t>* bytes = &library;
        std::string wanted = reply.body.is_object() ? reply.body.value("sha256", std::string()) : std::string();
        if (!wanted.empty() && wanted != req.library_sha256) {
          bytes = nullptr;
          for (size_t i = 0; i < dependencies.size() && i < req.dependencies.size(); ++i)
            if (req.dependencies[i].sha256 == wanted) bytes = &dependencies[i];
          if (!bytes) fail(Errc::protocol, "the executor daemon asked for a library this deploy does not have");
        }
        auto t_lib = Clock::now();
        stream_.send_frame(bytes->data(), bytes->size(), net::deadline_in(timeout * 6));
        timing.library_ms += ms_since(t_lib);
        continue;
      }
      if (reply.is(protocol::ControlType::error)) {
        auto code = protocol::control_errc_from_string(reply.body.value("code", "internal"));
        fail(from_control(code.value_or(protocol::ControlErrc::internal)),
             "executor daemon refused the lease: " + reply.body.value("message", ""));
      }
      if (!reply.is(protocol::ControlType::allocated)) fail(Errc::protocol, "unexpected '" + reply.type + "' from the executor daemon");
      timing.executor_start_ms = ms_since(t_phase) - timing.library_ms;
      return reply.as<protocol::Allocated>();
    }
  } catch (const net::NetError& e) {
    fail(Errc::connection_failed, "executor daemon " + daemon_address + ": " + e.what());
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, e.what());
  }
}

protocol::ControlMessage ControlChannel::request(const std::string& msg, protocol::ControlType expected, const char* what,
                                                 std::chrono::milliseconds wait) {
  if (ended_ != Errc::ok) fail(ended_, std::string(what) + ": the lease ended (" + ended_text_ + ")");
  if (!stream_) fail(Errc::invalid_argument, std::string(what) + ": the lease was released");
  try {
    stream_.send_frame(msg.data(), msg.size(), net::deadline_in(timeout_));
    const auto deadline = net::deadline_in(wait.count() < 0 ? timeout_ : wait);
    for (;;) {
      protocol::ControlMessage reply;
      if (!read_frame(deadline, &reply)) throw net::NetError(net::NetErrc::timeout, "no answer in time");
      if (reply.is(expected)) return reply;
      if (reply.is(protocol::ControlType::error)) {
        auto code = protocol::control_errc_from_string(reply.body.value("code", "internal"));
        fail(from_control(code.value_or(protocol::ControlErrc::internal)),
             std::string(what) + ": " + reply.body.value("message", std::string()));
      }
      if (reply.is(protocol::ControlType::lease_ended)) {
        note_end(reply.as<protocol::LeaseEnded>());
        fail(ended_, std::string(what) + ": the lease ended (" + ended_text_ + ")");
      }
    }
  } catch (const net::NetError& e) {
    fail(Errc::connection_failed, std::string(what) + ": " + e.what());
  } catch (const protocol::MessageError& e) {
    fail(Errc::protocol, std::string(what) + ": " + e.what());
  }
}

Errc ControlChannel::poll_end(std::chrono::milliseconds wait) noexcept {
  if (ended_ != Errc::ok || !stream_) return ended_;
  try {
    const auto deadline = net::deadline_in(wait);
    protocol::ControlMessage msg;
    while (read_frame(deadline, &msg))
      if (msg.is(protocol::ControlType::lease_ended)) return note_end(msg.as<protocol::LeaseEnded>());
  } catch (...) {
    // The daemon closed the connection or sent garbage: it will not say more.
    ended_ = Errc::executor_lost;
    ended_text_ = "the executor daemon's connection broke";
  }
  return ended_;
}

Usage ControlChannel::release() noexcept {
  if (!stream_) return usage_;
  try {
    if (ended_ == Errc::ok) {
      std::string msg = protocol::make_message(protocol::ControlType::release);
      stream_.send_frame(msg.data(), msg.size(), net::deadline_in(timeout_));
      const auto deadline = net::deadline_in(timeout_);
      protocol::ControlMessage reply;
      while (read_frame(deadline, &reply)) {
        if (!reply.is(protocol::ControlType::lease_ended)) continue;
        auto u = reply.as<protocol::LeaseEnded>().usage;
        usage_ = {u.invocations, u.hot_polling_ns, u.compute_ns};
        break;
      }
    }
  } catch (...) {
    // The lease already ended (expired, executor gone): nothing left to release.
  }
  stream_ = net::TcpStream();
  return usage_;
}

}  // namespace rfaas::client
