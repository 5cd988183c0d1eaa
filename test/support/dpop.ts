/**
 * DPoP keys and proofs (RFC 9449) made with jose, as a client would make them;
 * every part can be overridden to make the proofs a client should not send.
 *
 * No test-framework imports here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose';
import type { DpopKey } from './authorization-server.js';

export async function createDpopKey(alg = 'ES256'): Promise<DpopKey & { thumbprint: string; privateJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicJwk, alg, thumbprint: await calculateJwkThumbprint(publicJwk), privateJwk: await exportJWK(privateKey) };
}

export interface ProofOptions {
  method?: string;
  /** Default: https://api.example.com/orders/42, the URL of buildCheckRequest's default request. */
  url?: string;
  /** The access token ath is computed from; null: no ath. */
  token: string | null;
  /** Seconds since the epoch; default now. */
  iat?: number;
  jti?: string;
  /** Replaces or adds protected header members (e.g. a private jwk, another typ). */
  header?: Record<string, unknown>;
  /** Replaces or adds claims. */
  claims?: JWTPayload;
}

export const DEFAULT_URL = 'https://api.example.com/orders/42';

export function ath(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

export async function makeProof(key: DpopKey, options: ProofOptions): Promise<string> {
  const payload: JWTPayload = {
    jti: options.jti ?? randomBytes(16).toString('base64url'),
    htm: options.method ?? 'GET',
    htu: options.url ?? DEFAULT_URL,
    iat: options.iat ?? Math.floor(Date.now() / 1000),
    ...(options.token === null ? {} : { ath: ath(options.token) }),
    ...options.claims,
  };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...options.header } as never)
    .sign(key.privateKey);
}
