/**
 * Policy selection by host and path prefix, for proxies that send no
 * context_extensions (Istio's CUSTOM provider). Rules are validated and
 * ordered once at configuration load; a request walks the ordered list and
 * the first rule that matches wins:
 *
 * 1. an exact host before a wildcard host (`*.example.com`; a longer suffix
 *    first), and either before a rule without a host;
 * 2. within the same host, the longest path prefix first, and a rule without
 *    a prefix last.
 *
 * Two rules with the same host and prefix are a configuration error, so the
 * order never depends on where a rule is written.
 *
 * Hosts compare case-insensitively, without the port and a trailing dot.
 * Prefixes compare case-sensitively on whole segments of the path before its
 * query string: `/orders` matches `/orders`, `/orders/` and `/orders/42`, not
 * `/orders-archive`. A path that is not in normal form (see isNormalPath) is
 * never matched against a prefix: when a prefix would decide the policy, the
 * request is refused instead, since the upstream may read such a path as one
 * that belongs to another policy.
 */

export interface RouteRule {
  /** Lower-case host; null matches any host. */
  readonly host: string | null;
  /** True when `host` is the suffix of a wildcard (".example.com" for "*.example.com"). */
  readonly wildcard: boolean;
  /** Segment prefix without a trailing "/"; null matches any path. */
  readonly pathPrefix: string | null;
}

export interface RouteTable {
  readonly rules: ReadonlyArray<RouteRule & { readonly policy: string; readonly match: RouteMatch }>;
}

export type RouteMatch =
  | { readonly kind: 'policy'; readonly policy: string }
  | { readonly kind: 'none' }
  /** A prefix would decide, and the path is not in normal form. */
  | { readonly kind: 'abnormal_path' };

export const NO_ROUTE: RouteMatch = Object.freeze({ kind: 'none' });
export const ABNORMAL_PATH: RouteMatch = Object.freeze({ kind: 'abnormal_path' });
export const EMPTY_ROUTES: RouteTable = Object.freeze({ rules: Object.freeze([]) });

const LABEL = '[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?';
const HOSTNAME = new RegExp(`^${LABEL}(\\.${LABEL})*$`);
const IPV6 = /^\[[0-9a-f:.]+\]$/;

/** A `host` of a match rule: a name, "*.suffix" or a bracketed IPv6 address. Throws a TypeError that never quotes it. */
export function compileHost(text: string): { host: string; wildcard: boolean } {
  let host = text.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (IPV6.test(host)) return { host, wildcard: false };
  if (/:\d*$/.test(host)) throw new TypeError('must not include a port: hosts are compared without one');
  const wildcard = host.startsWith('*.');
  const name = wildcard ? host.slice(2) : host;
  if (!HOSTNAME.test(name) || name.length > 253) {
    throw new TypeError('must be a host name such as api.example.com, or *.example.com for any host under it');
  }
  return wildcard ? { host: `.${name}`, wildcard: true } : { host, wildcard: false };
}

/** A `pathPrefix` of a match rule; "/" (and "") means any path, returned as null. Throws a TypeError that never quotes it. */
export function compilePathPrefix(text: string): string | null {
  if (!text.startsWith('/')) throw new TypeError('must start with "/"');
  if (/[?#*]/.test(text)) throw new TypeError('must be a literal path prefix, without "?", "#" or "*"');
  if (!isNormalPath(text, text.length)) {
    throw new TypeError('must be in normal form: no "//", "." or ".." segments, ";", "\\", control characters, non-ASCII or escaped unreserved characters');
  }
  const trimmed = text.endsWith('/') ? text.slice(0, -1) : text;
  return trimmed === '' ? null : trimmed;
}

/** Order rules as documented above; `policy` names the policy of each rule. */
export function compileRoutes(rules: ReadonlyArray<RouteRule & { policy: string }>): RouteTable {
  if (rules.length === 0) return EMPTY_ROUTES;
  const rank = (rule: RouteRule): number => (rule.host === null ? 2 : rule.wildcard ? 1 : 0);
  const sorted = [...rules].sort(
    (a, b) =>
      rank(a) - rank(b) ||
      (b.wildcard && a.wildcard ? b.host!.length - a.host!.length : 0) ||
      (b.pathPrefix?.length ?? -1) - (a.pathPrefix?.length ?? -1),
  );
  const compiled = sorted.map((rule) => {
    const match: RouteMatch = Object.freeze({ kind: 'policy', policy: rule.policy });
    return Object.freeze({ host: rule.host, wildcard: rule.wildcard, pathPrefix: rule.pathPrefix, policy: rule.policy, match });
  });
  return Object.freeze({ rules: Object.freeze(compiled) });
}

/** Two rules that would match exactly the same requests. */
export function sameRoute(a: RouteRule, b: RouteRule): boolean {
  return a.host === b.host && a.wildcard === b.wildcard && a.pathPrefix === b.pathPrefix;
}

export function matchRoute(table: RouteTable, rawHost: string, path: string): RouteMatch {
  if (table.rules.length === 0) return NO_ROUTE;
  const host = normalizeHost(rawHost);
  const query = path.indexOf('?');
  const end = query < 0 ? path.length : query;
  let normal: boolean | undefined;
  for (const rule of table.rules) {
    if (rule.host !== null) {
      if (rule.wildcard ? !(host.length > rule.host.length && host.endsWith(rule.host)) : host !== rule.host) continue;
    }
    if (rule.pathPrefix === null) return rule.match;
    normal ??= isNormalPath(path, end);
    if (!normal) return ABNORMAL_PATH;
    const prefix = rule.pathPrefix;
    if (path.startsWith(prefix) && (end === prefix.length || path.charCodeAt(prefix.length) === SLASH)) {
      return rule.match;
    }
  }
  return NO_ROUTE;
}

/** Lower case, without the port and a trailing dot; allocates only when something changes. */
export function normalizeHost(raw: string): string {
  let end = raw.length;
  if (raw.charCodeAt(0) === 0x5b) {
    const close = raw.indexOf(']');
    if (close >= 0) end = close + 1;
  } else {
    const colon = raw.indexOf(':');
    if (colon >= 0) end = colon;
  }
  if (end > 0 && raw.charCodeAt(end - 1) === 0x2e) end -= 1;
  const host = end === raw.length ? raw : raw.slice(0, end);
  return /[A-Z]/.test(host) ? host.toLowerCase() : host;
}

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;

function hex(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** Characters whose escaped form means the same path (RFC 3986 unreserved) or another path altogether. */
function escapeChangesMeaning(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    byte === 0x2d || // -
    byte === DOT ||
    byte === 0x5f || // _
    byte === 0x7e || // ~
    byte === SLASH ||
    byte === 0x5c || // \
    byte === PERCENT ||
    byte === 0x3b || // ;
    byte < 0x20 ||
    byte >= 0x7f
  );
}

/**
 * Whether `path.slice(0, end)` reads the same to every server: it starts with
 * "/" and has no "//", no "." segment, no ".." anywhere, no "\", "#" or ";" (path
 * parameters: servlet containers read "/a;x/../b" as "/b"), no control or
 * non-ASCII characters, and no percent-escape of an unreserved character, of
 * "/", "\", "%", ";" or of a control or non-ASCII byte, nor a broken escape.
 * Escapes of other reserved characters (such as %20 or %3A) are fine.
 */
export function isNormalPath(path: string, end: number): boolean {
  if (end === 0 || path.charCodeAt(0) !== SLASH) return false;
  for (let i = 0; i < end; i += 1) {
    const code = path.charCodeAt(i);
    if (code < 0x21 || code > 0x7e || code === 0x5c || code === 0x3b || code === 0x23) return false;
    if (code === SLASH) {
      const next = i + 1 < end ? path.charCodeAt(i + 1) : -1;
      if (next === SLASH) return false;
      if (next === DOT && (i + 2 === end || path.charCodeAt(i + 2) === SLASH)) return false;
    } else if (code === DOT) {
      if (i + 1 < end && path.charCodeAt(i + 1) === DOT) return false;
    } else if (code === PERCENT) {
      if (i + 2 >= end) return false;
      const high = hex(path.charCodeAt(i + 1));
      const low = hex(path.charCodeAt(i + 2));
      if (high < 0 || low < 0 || escapeChangesMeaning(high * 16 + low)) return false;
      i += 2;
    }
  }
  return true;
}
