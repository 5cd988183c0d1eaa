/**
 * Rules for the headers this service writes into the upstream request:
 * names and values that are safe to emit, size caps, and which client-sent
 * copies must go.
 */
import type { HeaderToSet } from '../decision.js';

/**
 * Envoy refuses (and HTTP forbids) control characters in header values; a claim
 * carrying CR or LF could otherwise split a header. Refused as well, since an
 * upstream or a log viewer may act on them although HTTP lets them through:
 * C1 controls (U+0080-U+009F: NEL ends a line for some parsers, CSI starts a
 * terminal escape), the line and paragraph separators U+2028/U+2029 (line
 * ends to JavaScript and many log tools), the bidi marks, embeddings,
 * overrides and isolates (U+061C, U+200E, U+200F, U+202A-U+202E,
 * U+2066-U+2069: "admin\u202Eresu" shows as another name), and a lone UTF-16
 * surrogate (it would reach the wire as U+FFFD, a value the claim never held).
 * Everything else from U+0020 up, except DEL, is allowed (non-ASCII travels
 * as UTF-8).
 */
export function isSafeHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code >= 0x20 && code < 0x7f) continue;
    if (code < 0xa0) return false;
    if (code === 0x061c || code === 0x200e || code === 0x200f || code === 0x2028 || code === 0x2029) return false;
    if ((code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069)) return false;
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = value.charCodeAt(i + 1);
      if (code > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return false;
      i += 1;
    }
  }
  return true;
}

/** Largest value, in UTF-8 bytes, this service writes into one header. */
export const MAX_HEADER_VALUE_LENGTH = 8192;

/**
 * Most bytes (names and values) of all headers one allow adds: well below
 * Envoy's default 60 KiB request header limit, leaving room for the client's own.
 */
export const MAX_TOTAL_HEADER_BYTES = 32 * 1024;

/** Most per-attribute headers one allow adds (upstreams limit the header count too). */
export const MAX_ATTRIBUTE_HEADERS = 64;

/** Name of the pass-through marker header, under the policy's prefix ("x-auth-status"). */
export function statusHeaderName(prefix: string): string {
  return `${prefix}status`;
}

/** Longest claim name turned into a header name. */
const MAX_CLAIM_NAME_LENGTH = 128;

export function byteLength(value: string): number {
  return Buffer.byteLength(value, 'utf8');
}

/**
 * Headers that frame or route an HTTP message, or carry a credential: the one
 * list that both the headers set upstream (RESERVED_HEADERS) and an endpoint's
 * own `headers` towards the authorization server (RESERVED_ENDPOINT_HEADERS in
 * config/schema.ts) start from.
 */
export const MESSAGE_HEADERS: readonly string[] = [
  'authorization',
  'connection',
  'content-length',
  'content-type',
  'host',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/** Headers the service never sets upstream: the message headers, and what the proxy vouches for about the client. */
export const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  ...MESSAGE_HEADERS,
  'cookie',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-request-id',
]);

/** Whether a configured header name would overwrite something Envoy, HTTP or the credential needs. */
export function isProtectedHeader(name: string): boolean {
  return RESERVED_HEADERS.has(name) || name.startsWith('x-envoy-');
}

/**
 * Whether a header prefix would reach a protected header ("x-" would take in
 * x-forwarded-for and x-envoy-*, "content-" content-length): everything under
 * the prefix is removed from requests and may be set from claims.
 */
export function prefixCoversProtected(prefix: string): boolean {
  if ('x-envoy-'.startsWith(prefix) || prefix.startsWith('x-envoy-')) return true;
  for (const name of RESERVED_HEADERS) if (name.startsWith(prefix)) return true;
  return false;
}

/**
 * Header name of a claim: the prefix, then the claim name lower-cased, with
 * every character other than a-z and 0-9 turned into "-" ("client_id" gives
 * "x-auth-client-id"). Null when the name has no letter or digit at all or is
 * longer than 128 characters.
 */
export function attributeHeaderName(prefix: string, claim: string): string | null {
  if (claim.length > MAX_CLAIM_NAME_LENGTH) return null;
  let name = prefix;
  let meaningful = false;
  for (let i = 0; i < claim.length; i += 1) {
    const code = claim.charCodeAt(i);
    if ((code >= 0x61 && code <= 0x7a) || (code >= 0x30 && code <= 0x39)) {
      name += claim[i];
      meaningful = true;
    } else if (code >= 0x41 && code <= 0x5a) {
      name += String.fromCharCode(code + 0x20);
      meaningful = true;
    } else {
      name += '-';
    }
  }
  return meaningful ? name : null;
}

/**
 * Header value of a claim value: strings as they are, numbers and booleans
 * written out, an array of strings, numbers or booleans joined with single
 * spaces (as RFC 7662 writes scope) unless an element is empty or holds a
 * space, anything else as compact JSON. Null for null or an empty string
 * (no header). The caller still checks the result with isSafeHeaderValue and
 * the size caps: control characters are never encoded away, the header is dropped.
 */
export function attributeHeaderValue(value: unknown): string | null {
  switch (typeof value) {
    case 'string':
      return value === '' ? null : value;
    case 'number':
      return Number.isFinite(value) ? String(value) : null;
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      if (value === null) return null;
      if (Array.isArray(value) && value.length > 0 && value.every(isSpaceFreeScalar)) return value.join(' ');
      return json(value);
    default:
      return null;
  }
}

function isSpaceFreeScalar(item: unknown): boolean {
  if (typeof item === 'string') return item !== '' && !item.includes(' ');
  return (typeof item === 'number' && Number.isFinite(item)) || typeof item === 'boolean';
}

/** JSON text of a claim value, or null when it cannot be written (too deeply nested for the stack). */
export function json(value: unknown): string | null {
  try {
    return JSON.stringify(value) ?? null;
  } catch {
    return null;
  }
}

/**
 * Client-sent headers the upstream must not see: every header in the
 * service's namespace (under one of `prefixes`, or one of `names`), in any
 * spelling that swaps "-" and "_" (proxies and frameworks often treat them
 * alike; cf. oauth2-proxy CVE-2025-64484), that this response does not itself
 * set. Envoy applies removals after sets, so a header we set is never listed.
 */
export function spoofedHeaders(
  incoming: Iterable<string>,
  prefixes: readonly string[],
  names: ReadonlySet<string>,
  setByUs: readonly HeaderToSet[],
): string[] {
  const remove: string[] = [];
  for (const name of incoming) {
    const canonical = name.includes('_') ? name.replaceAll('_', '-') : name;
    if ((names.has(canonical) || startsWithAny(canonical, prefixes)) && !sets(setByUs, name)) remove.push(name);
  }
  return remove;
}

/** Whether the response sets this very name (a short list, read only for names in our namespace). */
function sets(headers: readonly HeaderToSet[], name: string): boolean {
  for (const header of headers) if (header.name === name) return true;
  return false;
}

function startsWithAny(name: string, prefixes: readonly string[]): boolean {
  for (const prefix of prefixes) if (name.startsWith(prefix)) return true;
  return false;
}
