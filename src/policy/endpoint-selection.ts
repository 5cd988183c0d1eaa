/**
 * Which of a policy's endpoints judges a token. One endpoint: that one. Several:
 * a JWT goes to the endpoint configured with its iss, read without verifying
 * anything (that endpoint then verifies everything by its own rules, issuer
 * included, so a lying iss only picks who refuses it); an opaque token goes to
 * the first. A JWT whose iss no endpoint has is nobody's: null, and no call.
 */
import type { Endpoint } from '../introspection/introspector.js';
import type { CompiledPolicy } from './compile.js';

export function selectEndpoint(policy: CompiledPolicy, token: string): Endpoint | null {
  const byIssuer = policy.endpointsByIssuer;
  if (byIssuer === null) return policy.endpoint;
  const issuer = unverifiedIssuer(token);
  if (issuer === undefined) return policy.endpoint;
  return issuer === null ? null : (byIssuer.get(issuer) ?? null);
}

/** Three base64url parts, the middle a JSON object: a JWS compact serialization, whatever its signature. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*$/;

/**
 * The iss of a token shaped as a JWT; undefined when it is not one (opaque).
 * A JWT-shaped token without a string iss is no one's: null.
 */
export function unverifiedIssuer(token: string): string | null | undefined {
  const parts = COMPACT_JWS.exec(token);
  if (parts === null) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return undefined;
  const iss = (payload as { iss?: unknown }).iss;
  return typeof iss === 'string' ? iss : null;
}
