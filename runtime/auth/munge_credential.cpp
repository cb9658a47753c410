#include "auth/munge_credential.hpp"

#include <munge.h>

#include <cstdlib>
#include <memory>

#include "protocol/broker_messages.hpp"

namespace rfaas::auth {

const char* to_string(AuthErrc c) {
  switch (c) {
    case AuthErrc::unavailable: return "unavailable";
    case AuthErrc::invalid: return "invalid";
    case AuthErrc::replayed: return "replayed";
    case AuthErrc::expired: return "expired";
    case AuthErrc::missing: return "missing";
    case AuthErrc::mismatch: return "mismatch";
  }
  return "invalid";
}

namespace {

struct CtxDeleter {
  void operator()(munge_ctx_t c) const { munge_ctx_destroy(c); }
};
using Ctx = std::unique_ptr<std::remove_pointer_t<munge_ctx_t>, CtxDeleter>;

Ctx make_ctx(const std::string& socket) {
  Ctx ctx(munge_ctx_create());
  if (!ctx) throw AuthError(AuthErrc::unavailable, "MUNGE: cannot create a context (out of memory)");
  if (!socket.empty() && munge_ctx_set(ctx.get(), MUNGE_OPT_SOCKET, socket.c_str()) != EMUNGE_SUCCESS)
    throw AuthError(AuthErrc::unavailable, "MUNGE: cannot use socket " + socket);
  return ctx;
}

AuthErrc classify(munge_err_t e) {
  switch (e) {
    case EMUNGE_SOCKET:
    case EMUNGE_TIMEOUT:
    case EMUNGE_SNAFU:
    case EMUNGE_NO_MEMORY:
    case EMUNGE_OVERFLOW: return AuthErrc::unavailable;
    case EMUNGE_CRED_REPLAYED: return AuthErrc::replayed;
    case EMUNGE_CRED_EXPIRED:
    case EMUNGE_CRED_REWOUND: return AuthErrc::expired;
    default: return AuthErrc::invalid;
  }
}

std::string describe(munge_ctx_t ctx, munge_err_t e) {
  const char* s = munge_ctx_strerror(ctx);
  return s ? s : munge_strerror(e);
}

}  // namespace

std::string client_socket() {
  const char* s = std::getenv("RFAAS_MUNGE_SOCKET");
  return s ? s : "";
}

std::string encode(const std::string& payload, const std::string& socket) {
  Ctx ctx = make_ctx(socket);
  char* cred = nullptr;
  munge_err_t e = munge_encode(&cred, ctx.get(), payload.data(), static_cast<int>(payload.size()));
  if (e != EMUNGE_SUCCESS) {
    std::string why = describe(ctx.get(), e);
    std::free(cred);
    throw AuthError(classify(e), "MUNGE credential: " + why + (socket.empty() ? "" : " (socket " + socket + ")"));
  }
  std::string out(cred);
  std::free(cred);
  return out;
}

Identity decode(const std::string& credential, const std::string& socket, std::string* payload) {
  Ctx ctx = make_ctx(socket);
  void* buf = nullptr;
  int len = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  munge_err_t e = munge_decode(credential.c_str(), ctx.get(), &buf, &len, &uid, &gid);
  if (e != EMUNGE_SUCCESS) {
    std::string why = describe(ctx.get(), e);
    std::free(buf);  // allocated even for some failures (a replay)
    throw AuthError(classify(e), "MUNGE credential " + std::string(to_string(classify(e))) + ": " + why);
  }
  if (payload) payload->assign(static_cast<const char*>(buf), static_cast<size_t>(len > 0 ? len : 0));
  std::free(buf);
  return {static_cast<uint32_t>(uid), static_cast<uint32_t>(gid)};
}

nlohmann::json with_credential(const std::string& type, nlohmann::json body, const std::string& socket) {
  if (!body.is_object()) body = nlohmann::json::object();
  body.erase("credential");
  body["credential"] = encode(protocol::request_digest(type, body), socket);
  return body;
}

nlohmann::json with_credential_for(const std::string& audience, const std::string& type, nlohmann::json body,
                                   const std::string& socket) {
  if (!body.is_object()) body = nlohmann::json::object();
  body[protocol::kAudienceField] = audience;  // covered by the digest the credential signs
  return with_credential(type, std::move(body), socket);
}

Identity authenticate(const std::string& type, const nlohmann::json& body, const std::string& socket) {
  if (!body.is_object() || !body.contains("credential") || !body.at("credential").is_string())
    throw AuthError(AuthErrc::missing, "'" + type + "' needs a MUNGE credential (is munged running where the client runs?)");
  std::string payload;
  Identity who = decode(body.at("credential").get<std::string>(), socket, &payload);
  if (payload != protocol::request_digest(type, body))
    throw AuthError(AuthErrc::mismatch, "the MUNGE credential was made for another request");
  return who;
}

}  // namespace rfaas::auth
