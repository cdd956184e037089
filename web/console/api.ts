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
import { TopicService } from "../gen/herald/v1/topic_service_pb.js";
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
    topics: createClient(TopicService, transport),
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

// A client-streaming call from a browser: fetch cannot stream a request body, so the stream's messages go as one
// Connect streaming body (each an envelope: a flag byte, a 4-byte length, the JSON), and the answer is read whole.
export async function clientStream<T>(session: Session, procedure: string, messages: object[]): Promise<T> {
  const encoder = new TextEncoder();
  const parts = messages.map((message) => {
    const json = encoder.encode(JSON.stringify(message));
    const envelope = new Uint8Array(5 + json.length);
    new DataView(envelope.buffer).setUint32(1, json.length);
    envelope.set(json, 5);
    return envelope;
  });
  const reply = await fetch(`${location.origin}/${procedure}`, {
    method: "POST",
    headers: {
      "content-type": "application/connect+json",
      "connect-protocol-version": "1",
      authorization: `Bearer ${session.token}`,
    },
    body: new Blob(parts),
  });
  const body = new Uint8Array(await reply.arrayBuffer());
  let answer: T | undefined;
  for (let at = 0; at + 5 <= body.length; ) {
    const flags = body[at];
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    const json = JSON.parse(new TextDecoder().decode(body.subarray(at + 5, at + 5 + length)));
    if (flags & 2) {
      if (json.error) throw new ConnectError(json.error.message ?? "refused", codeOf(String(json.error.code)));
    } else {
      answer = json as T;
    }
    at += 5 + length;
  }
  if (answer === undefined) throw new ConnectError(`herald answered HTTP ${reply.status}`, Code.Unavailable);
  return answer;
}

// Connect's error code on the wire ("permission_denied") as connect-es names it (Code.PermissionDenied).
function codeOf(wire: string): Code {
  const name = wire.split("_").map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join("");
  return Code[name as keyof typeof Code] ?? Code.Unknown;
}
