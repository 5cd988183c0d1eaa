/**
 * Decision -> the HTTP answer to a proxy's sub-request: the one place that
 * builds them, the same for every contract (each proxy reads what it knows
 * and ignores the rest).
 *
 * Allow: 200 with the headers for the upstream (Envoy: allowed_upstream_headers;
 * nginx: auth_request_set; Caddy: copy_headers; Traefik: authResponseHeaders)
 * and, for Envoy, the client-sent copies to drop in x-envoy-auth-headers-to-remove.
 * Deny: the deny's status, WWW-Authenticate and JSON body, which Envoy, Caddy
 * and Traefik pass to the client. nginx passes 401 and 403 only and makes any
 * other status a 500; X-Authz-Status carries the real one for the shipped
 * nginx config to restore (deploy/nginx/).
 */
import { denyBody, type Decision } from '../decision.js';

export interface HttpAnswer {
  readonly status: number;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: string;
}

export const HEADERS_TO_REMOVE = 'x-envoy-auth-headers-to-remove';
export const STATUS_HEADER = 'x-authz-status';

export function renderHttpAnswer(decision: Decision): HttpAnswer {
  if (decision.allow) {
    const headers: Array<readonly [string, string]> = [['cache-control', 'no-store']];
    for (const { name, value } of decision.headers) headers.push([name, value]);
    if (decision.removeHeaders.length > 0) headers.push([HEADERS_TO_REMOVE, decision.removeHeaders.join(',')]);
    return { status: 200, headers, body: '' };
  }
  const headers: Array<readonly [string, string]> = [
    ['content-type', 'application/json'],
    ['cache-control', 'no-store'],
    [STATUS_HEADER, String(decision.status)],
  ];
  if (decision.challenge !== null) headers.push(['www-authenticate', decision.challenge]);
  // Headers the client must see with the deny, such as DPoP-Nonce (RFC 9449 §8): every proxy passes a deny's headers on.
  for (const { name, value } of decision.headers ?? []) headers.push([name, value]);
  return { status: decision.status, headers, body: denyBody(decision) };
}
