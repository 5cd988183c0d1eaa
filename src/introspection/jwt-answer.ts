/**
 * RFC 9701: an introspection answer signed by the authorization server. Only
 * a JWT of type token-introspection+jwt, signed with an allow-listed algorithm
 * by a key of the issuer's set, from our issuer, for us (aud = our client id)
 * and recent (iat) is read; its token_introspection claim is then an RFC 7662
 * answer like any other. Everything else, a plain JSON answer included, is a
 * bad response: never an allow, and never "inactive" either, since an answer
 * we cannot trust says nothing about the token. Encrypted answers (JWE) are
 * not read.
 */
import type { JWTVerifyGetKey } from 'jose';
import { verifyWithKeySet } from './jwks.js';
import { readIntrospectionAnswer, type IntrospectionResult, type ReadOptions } from './result.js';

export interface SignedAnswerRules {
  issuer: string;
  /** Our client id at the authorization server: the answer's aud. */
  clientId: string;
  algorithms: readonly string[];
  /** Seconds the answer's iat may lie in the past. */
  maxAnswerAge: number;
}

export async function readSignedAnswer(
  body: string,
  getKey: JWTVerifyGetKey,
  rules: SignedAnswerRules,
  options: ReadOptions,
): Promise<IntrospectionResult> {
  let claims: Record<string, unknown>;
  try {
    const verified = await verifyWithKeySet(body.trim(), getKey, {
      typ: 'token-introspection+jwt',
      issuer: rules.issuer,
      audience: rules.clientId,
      algorithms: [...rules.algorithms],
      clockTolerance: options.clockSkew,
      currentDate: new Date(options.now),
      maxTokenAge: rules.maxAnswerAge + options.clockSkew,
      requiredClaims: ['iat'],
    });
    claims = verified.payload as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ERR_KEYS_UNAVAILABLE') return { outcome: 'error', detail: (error as Error).message };
    return { outcome: 'bad_response', detail: `the answer is not a valid signed introspection response (${typeof code === 'string' ? code : 'unreadable'})` };
  }
  return readIntrospectionAnswer(claims.token_introspection, options);
}
