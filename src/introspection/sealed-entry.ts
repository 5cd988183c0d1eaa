/**
 * How an introspection answer is stored in the shared (L2) cache so that a
 * dump of the store reveals neither tokens nor claims:
 *
 * - the key is HMAC-SHA256(deployment secret, endpoint cache id NUL token), in
 *   hex: without the secret a key cannot be recomputed from a token, nor
 *   brute-forced offline from a dump;
 * - the value is AES-256-GCM under a key derived from the token alone
 *   (HKDF-SHA256, salt = endpoint cache id), with a random 96-bit nonce and the
 *   store key as additional data: an entry opens only for the token it was
 *   written for, under the name it was written to; any change fails the tag.
 *
 * Layout of a value: version byte (1) | nonce (12) | ciphertext | tag (16).
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { Claims } from './result.js';

const VERSION = 1;
const NONCE = 12;
const TAG = 16;
const INFO = Buffer.from('envoy-introspection-authz l2 entry v1');

/** What the shared cache holds for a token at an endpoint. */
export type SharedEntry =
  | {
      readonly active: true;
      readonly claims: Claims;
      /** The token's own expiry (epoch ms), if the answer gave one. */
      readonly tokenExpiresAt: number | null;
      /** Epoch ms after which the answer must not be reused, whichever tier holds it. */
      readonly expiresAt: number;
    }
  | { readonly active: false; readonly expiresAt: number };

/** The shared-cache key of a token at an endpoint (hex). */
export function sharedKey(secret: Buffer, cacheId: string, token: string): string {
  return createHmac('sha256', secret).update(cacheId).update('\0').update(token).digest('hex');
}

function entryKey(cacheId: string, token: string): Buffer {
  return Buffer.from(hkdfSync('sha256', token, cacheId, INFO, 32));
}

/** Encrypt an entry for storage under `name`. */
export function seal(entry: SharedEntry, cacheId: string, token: string, name: string): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', entryKey(cacheId, token), nonce, { authTagLength: TAG });
  cipher.setAAD(Buffer.from(name));
  const body = Buffer.concat([cipher.update(JSON.stringify(entry), 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]);
}

/** Decrypt a stored value; undefined when it was not written for this token and name, or was altered. */
export function open(value: Buffer, cacheId: string, token: string, name: string): SharedEntry | undefined {
  if (value.length < 1 + NONCE + TAG + 2 || value[0] !== VERSION) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', entryKey(cacheId, token), value.subarray(1, 1 + NONCE), {
      authTagLength: TAG,
    });
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(value.subarray(value.length - TAG));
    const text = Buffer.concat([decipher.update(value.subarray(1 + NONCE, value.length - TAG)), decipher.final()]);
    return wellFormed(JSON.parse(text.toString('utf8')));
  } catch {
    return undefined;
  }
}

/** Authenticated data was written by us, but maybe by another version: take only what we understand. */
function wellFormed(value: unknown): SharedEntry | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const entry = value as Record<string, unknown>;
  if (typeof entry.expiresAt !== 'number') return undefined;
  if (entry.active === false) return { active: false, expiresAt: entry.expiresAt };
  if (entry.active !== true || typeof entry.claims !== 'object' || entry.claims === null) return undefined;
  const tokenExpiresAt = typeof entry.tokenExpiresAt === 'number' ? entry.tokenExpiresAt : null;
  // Claims are null-prototype objects (see result.ts); fromEntries defines "__proto__" as a plain key.
  const claims = Object.setPrototypeOf(Object.fromEntries(Object.entries(entry.claims)), null) as Claims;
  return { active: true, claims, tokenExpiresAt, expiresAt: entry.expiresAt };
}
