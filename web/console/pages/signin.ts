// Sign in: through the company's identity provider, or with the admin token (bootstrap and break-glass).
import { h } from "../dom.js";
import { beginSignIn, type ConsoleConfig, withAdminToken } from "../session.js";

export function signInPage(config: ConsoleConfig, signedIn: () => void): HTMLElement {
  const problem = h("p", { class: "error", role: "alert" });
  const sso = config.oidc
    ? h(
        "section",
        { class: "panel", "aria-labelledby": "sso-title" },
        h("h2", { id: "sso-title" }, "Your company account"),
        h("p", {}, "Sign in with the company's identity provider; what you may do follows your herald roles."),
        button("Sign in with your company account", () => {
          beginSignIn(config.oidc!).catch((error: Error) => {
            problem.textContent = `Could not reach the identity provider: ${error.message}`;
          });
        }),
      )
    : h("p", {}, "No identity provider is configured (HERALD_OIDC_ISSUER, HERALD_CONSOLE_CLIENT_ID): use the admin token.");
  const token = h("input", { id: "admin-token", type: "password", autocomplete: "off", required: "" }) as HTMLInputElement;
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "token-title" },
    h("h2", { id: "token-title" }, "Admin token"),
    h("p", {}, "For the first operator, and when the identity provider is down. Every call is audited."),
    h("label", { for: "admin-token" }, "HERALD_ADMIN_TOKEN", token),
    h("p", {}, h("button", { type: "submit", class: "secondary" }, "Sign in with the token")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    withAdminToken(token.value.trim());
    signedIn();
  });
  return h("section", { "aria-labelledby": "signin-title" }, h("h1", { id: "signin-title" }, "Sign in to herald"), problem, sso, form);
}

function button(text: string, onClick: () => void): HTMLElement {
  const element = h("button", { type: "button" }, text);
  element.addEventListener("click", onClick);
  return element;
}
