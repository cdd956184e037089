// herald's API as the console calls it: Connect with JSON to the gateway that served the page, with the session's
// token on every call.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../gen/herald/v1/admin_service_pb.js";
import { AuditService } from "../gen/herald/v1/audit_service_pb.js";
import { DeadLetterService } from "../gen/herald/v1/dead_letter_service_pb.js";
import { DirectoryService } from "../gen/herald/v1/directory_service_pb.js";
import { ProviderService } from "../gen/herald/v1/provider_service_pb.js";
import { RoutingService } from "../gen/herald/v1/routing_service_pb.js";
import { StatusService } from "../gen/herald/v1/status_service_pb.js";
import type { Session } from "./session.js";

export function clients(session: Session) {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("Authorization", `Bearer ${session.token}`);
    return next(request);
  };
  const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [bearer] });
  return {
    admin: createClient(AdminService, transport),
    audit: createClient(AuditService, transport),
    deadLetters: createClient(DeadLetterService, transport),
    directory: createClient(DirectoryService, transport),
    providers: createClient(ProviderService, transport),
    routing: createClient(RoutingService, transport),
    status: createClient(StatusService, transport),
  };
}

export type Clients = ReturnType<typeof clients>;

// herald's INVALID_ARGUMENT names each bad field: "field.path: what is wrong; other.field: …" (herald/libs/errors.py).
export function fieldProblems(error: unknown): Map<string, string> {
  const problems = new Map<string, string>();
  const refused = ConnectError.from(error);
  if (refused.code !== Code.InvalidArgument) return problems;
  for (const part of refused.rawMessage.split("; ")) {
    const split = part.indexOf(": ");
    if (split > 0) problems.set(part.slice(0, split), part.slice(split + 2));
  }
  return problems;
}

export function why(error: unknown): string {
  return ConnectError.from(error).rawMessage;
}
