/**
 * An HTTP authorization sub-request -> AuthRequest. The sub-request's own path
 * says which contract carried it and which policy applies, both fixed by the
 * proxy's configuration:
 *
 *   /envoy/<policy>/<original path>  Envoy http_service with path_prefix /envoy/<policy>
 *                                    (Istio envoyExtAuthzHttp: pathPrefix); the original
 *                                    method, Host and path are the sub-request's own.
 *   /nginx/<policy>                  nginx auth_request, ingress-nginx auth-url: the original
 *                                    request in X-Original-URL (scheme://host/uri) and
 *                                    X-Original-Method, which the shipped configs overwrite.
 *   /forward/<policy>                Caddy forward_auth, Traefik ForwardAuth: X-Forwarded-Method,
 *                                    -Proto, -Host and -Uri, which both proxies overwrite.
 *
 * <policy> is a policy name, or "-" to let the host and path rules (or the
 * default) choose from the original request. A client never picks the
 * policy: nothing it can send takes part in choosing, except the original
 * host and path as the proxy reports them. A header the contract needs that
 * is missing or repeated is a misconfigured proxy (or a client's copy that
 * the proxy did not overwrite): refused, never guessed at.
 */
import type { AuthRequest } from '../auth-request.js';

export type Contract = 'envoy' | 'nginx' | 'forward';

export type SubRequest =
  | { readonly ok: true; readonly contract: Contract; readonly request: AuthRequest }
  | { readonly ok: false; readonly contract: Contract | null; readonly detail: string };

/** "-": no policy named, the rules choose. Policy names start with a letter or digit. */
const BY_RULES = '-';
const NO_EXTENSIONS: ReadonlyMap<string, string> = new Map();
/** scheme://authority then the rest, kept as sent: the route rules judge whether a path is in normal form. */
const ABSOLUTE_URL = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/i;

/**
 * @param target the request-target as sent (Node's `request.url`)
 * @param rawHeaders Node's `request.rawHeaders`: name, value, name, value…
 */
export function readSubRequest(method: string, target: string, rawHeaders: readonly string[]): SubRequest {
  const route = /^\/(envoy|nginx|forward)\/([^/?]+)(.*)$/s.exec(target);
  if (route === null) return { ok: false, contract: null, detail: 'the sub-request path names no contract (/envoy/, /nginx/, /forward/)' };
  const contract = route[1] as Contract;
  const named = decodeSegment(route[2]!);
  if (named === null) return { ok: false, contract, detail: 'the policy segment of the sub-request path is not valid' };
  const rest = route[3]!;
  const headers = headerMap(rawHeaders);
  const base = {
    headers,
    contextExtensions: NO_EXTENSIONS,
    requestId: single(headers, 'x-request-id') ?? null,
    ...(named === BY_RULES ? {} : { policy: named }),
  };

  switch (contract) {
    case 'envoy': {
      if (rest !== '' && !rest.startsWith('/') && !rest.startsWith('?')) {
        return { ok: false, contract, detail: 'the path after the policy segment is not an original path' };
      }
      const host = single(headers, 'host');
      if (host === undefined) return { ok: false, contract, detail: 'no single Host header' };
      const path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
      return { ok: true, contract, request: { ...base, method, host, path } };
    }
    case 'nginx': {
      const url = single(headers, 'x-original-url');
      const originalMethod = single(headers, 'x-original-method');
      if (url === undefined || originalMethod === undefined) {
        return { ok: false, contract, detail: 'no single X-Original-URL and X-Original-Method (see deploy/nginx/)' };
      }
      const parts = ABSOLUTE_URL.exec(url);
      if (parts === null) return { ok: false, contract, detail: 'X-Original-URL is not an absolute URL' };
      return { ok: true, contract, request: { ...base, method: originalMethod, host: parts[2]!, path: parts[3] || '/' } };
    }
    case 'forward': {
      const originalMethod = single(headers, 'x-forwarded-method');
      const host = single(headers, 'x-forwarded-host');
      const uri = single(headers, 'x-forwarded-uri');
      if (originalMethod === undefined || host === undefined || uri === undefined) {
        return { ok: false, contract, detail: 'no single X-Forwarded-Method, X-Forwarded-Host and X-Forwarded-Uri' };
      }
      return { ok: true, contract, request: { ...base, method: originalMethod, host, path: uri } };
    }
  }
}

function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** Each header line one value, names lower-cased, in the order sent. */
function headerMap(raw: readonly string[]): Map<string, string[]> {
  const headers = new Map<string, string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const values = headers.get(name);
    if (values === undefined) headers.set(name, [raw[i + 1]!]);
    else values.push(raw[i + 1]!);
  }
  return headers;
}

/** The value of a header sent exactly once; a second copy means someone other than the proxy wrote one. */
function single(headers: ReadonlyMap<string, readonly string[]>, name: string): string | undefined {
  const values = headers.get(name);
  return values?.length === 1 ? values[0] : undefined;
}
