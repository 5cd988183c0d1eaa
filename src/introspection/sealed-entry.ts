/**
 * How an introspection answer is stored in the shared (L2) cache so that a
 * dump of the store reveals neither tokens nor claims, and so that only a
 * holder of the deployment secret (`redis.keySecret`) can write an entry a
 * replica accepts:
 *
 * - keys are derived from the deployment secret (HKDF-SHA256, one label
 *   each): one names store entries, one seals them, one fingerprints endpoint
 *   settings (see EndpointClient's cacheId), and two serve DPoP (replay
 *   record names, nonces);
 * - the store key is HMAC-SHA256(name key, endpoint cache id NUL token), in
 *   hex: without the secret a key cannot be recomputed from a token, nor
 *   brute-forced offline from a dump;
 * - the value is AES-256-GCM under a key derived from the sealing key, the
 *   endpoint cache id and the token (HKDF-SHA256 over HMAC-SHA256(sealing key,
 *   cache id NUL token)), with a random 96-bit nonce and the store key as
 *   additional data: an entry opens only for the token it was written for,
 *   under the name it was written to, and cannot be made without the secret,
 *   even by someone who holds the token and knows every other setting.
 *
 * Layout of a value: version byte (2) | nonce (12) | ciphertext | tag (16).
 * Version 1 entries (a key from the token alone) never open: a miss.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { Claims } from './result.js';

const VERSION = 2;
const NONCE = 12;
const TAG = 16;
const INFO = Buffer.from('envoy-introspection-authz l2 entry v2');

/** What the shared cache holds for a token at an endpoint. */
export type SharedEntry =
  | {
      readonly active: true;
      readonly claims: Claims;
      /** The token's own expiry (epoch ms), if the answer gave one. */
      readonly tokenExpiresAt: number | null;
      /** Epoch ms after which the answer must not be reused, whichever tier holds it. */
      readonly expiresAt: number;
      /** Epoch ms (the writer's clock) at which the call that got the answer started: older than an eviction = refused. */
      readonly writtenAt: number;
    }
  | { readonly active: false; readonly expiresAt: number; readonly writtenAt: number };

/** The keys of the shared tier, each derived from the deployment secret for one use. */
export interface SharedKeys {
  /** Keys the HMAC of store entry names. */
  readonly name: Buffer;
  /** Keys the derivation of each entry's encryption key. */
  readonly entry: Buffer;
  /** Keys the fingerprint of endpoint settings in cache ids, so replicas agree on it and a dump cannot test guesses of it. */
  readonly fingerprint: Buffer;
  /** Keys the HMAC of DPoP replay records (credentials/replay-store.ts). */
  readonly replay: Buffer;
  /** Keys the DPoP nonces every replica hands out alike (credentials/dpop-nonce.ts). */
  readonly nonce: Buffer;
}

export function sharedKeys(keySecret: string | Buffer): SharedKeys {
  const derive = (label: string) => Buffer.from(hkdfSync('sha256', keySecret, Buffer.alloc(0), `envoy-introspection-authz l2 ${label}`, 32));
  return { name: derive('name key'), entry: derive('entry key'), fingerprint: derive('fingerprint key'), replay: derive('dpop replay key'), nonce: derive('dpop nonce key') };
}

/** The shared-cache key of a token at an endpoint (hex). */
export function sharedKey(keys: SharedKeys, cacheId: string, token: string): string {
  return createHmac('sha256', keys.name).update(cacheId).update('\0').update(token).digest('hex');
}

function entryKey(keys: SharedKeys, cacheId: string, token: string): Buffer {
  const material = createHmac('sha256', keys.entry).update(cacheId).update('\0').update(token).digest();
  return Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), INFO, 32));
}

/** Encrypt an entry for storage under `name`. */
export function seal(entry: SharedEntry, keys: SharedKeys, cacheId: string, token: string, name: string): Buffer {
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv('aes-256-gcm', entryKey(keys, cacheId, token), nonce, { authTagLength: TAG });
  cipher.setAAD(Buffer.from(name));
  const body = Buffer.concat([cipher.update(JSON.stringify(entry), 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), nonce, body, cipher.getAuthTag()]);
}

/** Decrypt a stored value; undefined when it was not written for this token and name, or was altered. */
export function open(value: Buffer, keys: SharedKeys, cacheId: string, token: string, name: string): SharedEntry | undefined {
  if (value.length < 1 + NONCE + TAG + 2 || value[0] !== VERSION) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', entryKey(keys, cacheId, token), value.subarray(1, 1 + NONCE), {
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
  if (typeof entry.expiresAt !== 'number' || typeof entry.writtenAt !== 'number') return undefined;
  const { expiresAt, writtenAt } = entry;
  if (entry.active === false) return { active: false, expiresAt, writtenAt };
  if (entry.active !== true || typeof entry.claims !== 'object' || entry.claims === null) return undefined;
  const tokenExpiresAt = typeof entry.tokenExpiresAt === 'number' ? entry.tokenExpiresAt : null;
  // Claims are null-prototype objects (see result.ts); fromEntries defines "__proto__" as a plain key.
  const claims = Object.setPrototypeOf(Object.fromEntries(Object.entries(entry.claims)), null) as Claims;
  return { active: true, claims, tokenExpiresAt, expiresAt, writtenAt };
}
