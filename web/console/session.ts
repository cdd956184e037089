// Who is signed in: an operator through the company's OpenID Connect provider (authorization code with PKCE, the
// access token kept for this tab only), or the bootstrap admin token. herald checks the token on every call; the
// roles read here only decide what the console offers.
export interface ConsoleConfig {
  oidc: { issuer: string; clientId: string; scope: string; rolesClaim: string } | null;
  // Jaeger's UI, for links to a message's trace; "" = no links.
  jaegerUrl: string;
}

export interface Session {
  token: string;
  actor: string;
  roles: string[];
}

const SESSION = "herald.session";
const PENDING = "herald.sign-in";

export function current(): Session | null {
  const saved = sessionStorage.getItem(SESSION);
  return saved ? (JSON.parse(saved) as Session) : null;
}

export function signOut(): void {
  sessionStorage.removeItem(SESSION);
}

export function withAdminToken(token: string): Session {
  return keep({ token, actor: "admin-token", roles: ["herald.admin"] });
}

export function may(session: Session, ...roles: string[]): boolean {
  return session.roles.includes("herald.admin") || roles.some((role) => session.roles.includes(role));
}

function keep(session: Session): Session {
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

interface Discovery {
  authorization_endpoint: string;
  token_endpoint: string;
}

async function discover(issuer: string): Promise<Discovery> {
  const reply = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!reply.ok) throw new Error(`the identity provider answered ${reply.status}`);
  return (await reply.json()) as Discovery;
}

function redirectUri(): string {
  return `${location.origin}/`;
}

export async function beginSignIn(oidc: NonNullable<ConsoleConfig["oidc"]>): Promise<void> {
  const discovery = await discover(oidc.issuer);
  const verifier = random();
  const state = random();
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: oidc.clientId,
    redirect_uri: redirectUri(),
    scope: oidc.scope,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(`${discovery.authorization_endpoint}?${query}`);
}

// Back from the provider with ?code=…&state=…: the code and the PKCE verifier buy the access token.
export async function finishSignIn(oidc: ConsoleConfig["oidc"]): Promise<Session | null> {
  const query = new URLSearchParams(location.search);
  const code = query.get("code");
  if (!oidc || !code) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? "{}") as { verifier?: string; state?: string };
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", "/#/messages");
  if (!pending.verifier || query.get("state") !== pending.state) throw new Error("this sign-in was not started here");
  const discovery = await discover(oidc.issuer);
  const reply = await fetch(discovery.token_endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri(),
      client_id: oidc.clientId,
      code_verifier: pending.verifier,
    }),
  });
  if (!reply.ok) throw new Error(`the identity provider refused the sign-in (${reply.status})`);
  const token = ((await reply.json()) as { access_token: string }).access_token;
  const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))) as Record<string, unknown>;
  const named = claims[oidc.rolesClaim];
  const roles = typeof named === "string" ? named.split(" ") : Array.isArray(named) ? named.map(String) : [];
  return keep({ token, actor: String(claims.sub ?? "?"), roles });
}
