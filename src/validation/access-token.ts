/**
 * RFC 9068 section 4: is this JWT access token good for us? Signature by a key
 * of the issuer's set with an allow-listed algorithm (never none, never HMAC:
 * the keys are public), typ, iss, aud, exp, nbf and iat; then the claims take
 * the same shape as an introspection answer's, for the same policy evaluation.
 */
import type { JWTVerifyGetKey } from 'jose';
import { normalizeType } from '../config/endpoint.js';
import { verifyWithKeySet } from '../introspection/jwks.js';
import { activeClaims, INACTIVE, type IntrospectionResult } from '../introspection/result.js';

export interface AccessTokenRules {
  issuer: string;
  /** The token's aud must hold one of these. */
  audience: readonly string[];
  algorithms: readonly string[];
  /** Accepted typ values, normalized (see normalizeType). */
  tokenTypes: readonly string[];
  /** Seconds of tolerated clock difference. */
  clockSkew: number;
  multiValuedScope: boolean;
}

/** RFC 9068 section 2.2: every one of these must be present. */
const REQUIRED_CLAIMS = ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'];

/** Cheap refusals first: a JWS has three parts, and anything else costs no key lookup. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * The token's verdict: active with its claims, or inactive (forged, expired,
 * for someone else, of the wrong type). Throws only when no keys could be had
 * (KeysUnavailableError): that is not the token's fault.
 */
export async function verifyAccessToken(
  token: string,
  getKey: JWTVerifyGetKey,
  rules: AccessTokenRules,
  now: number,
): Promise<IntrospectionResult> {
  if (!COMPACT_JWS.test(token)) return INACTIVE;
  let payload: Record<string, unknown>;
  let typ: unknown;
  try {
    const verified = await verifyWithKeySet(token, getKey, {
      issuer: rules.issuer,
      audience: [...rules.audience],
      algorithms: [...rules.algorithms],
      clockTolerance: rules.clockSkew,
      currentDate: new Date(now),
      requiredClaims: REQUIRED_CLAIMS,
    });
    payload = verified.payload as Record<string, unknown>;
    typ = verified.protectedHeader.typ;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_KEYS_UNAVAILABLE') throw error;
    return INACTIVE;
  }
  // An ID token or any other JWT of the issuer is signed with the same keys: typ tells them apart.
  if (typeof typ !== 'string' || !rules.tokenTypes.includes(normalizeType(typ))) return INACTIVE;
  return activeClaims(payload, {
    now,
    clockSkew: rules.clockSkew,
    issuer: rules.issuer,
    audience: rules.audience,
    multiValuedScope: rules.multiValuedScope,
  });
}
