/**
 * Rules for the headers this service writes into the upstream request:
 * values that are safe to emit, and which client-sent copies must go.
 */

/**
 * Envoy refuses (and HTTP forbids) control characters in header values; a claim
 * carrying CR or LF could otherwise split a header. Anything from U+0020 up,
 * except DEL, is allowed (non-ASCII travels as UTF-8).
 */
export function isSafeHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return false;
  }
  return true;
}

/** Largest value this service writes into one header. */
export const MAX_HEADER_VALUE_LENGTH = 8192;

/**
 * Client-sent headers the upstream must not see: every header in the
 * service's namespace (`prefix`, or one of `names`), in any spelling that
 * swaps "-" and "_" (proxies and frameworks often treat them alike), that this
 * response does not itself set. Envoy applies removals after sets, so a header
 * we set is never listed.
 */
export function spoofedHeaders(
  incoming: Iterable<string>,
  prefix: string,
  names: ReadonlySet<string>,
  setByUs: ReadonlySet<string>,
): string[] {
  const remove: string[] = [];
  for (const name of incoming) {
    if (setByUs.has(name)) continue;
    const canonical = name.includes('_') ? name.replaceAll('_', '-') : name;
    if (canonical.startsWith(prefix) || names.has(canonical)) remove.push(name);
  }
  return remove;
}
