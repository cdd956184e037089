// herald's API as the console calls it: Connect with JSON to the gateway that served the page, with the session's
// token on every call.
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { StatusService } from "../gen/herald/v1/status_service_pb.js";
import type { Session } from "./session.js";

export function clients(session: Session) {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("Authorization", `Bearer ${session.token}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [bearer] });
  return { status: createClient(StatusService, transport) };
}

export type Clients = ReturnType<typeof clients>;
