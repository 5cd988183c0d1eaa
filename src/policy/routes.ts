/**
 * Policy selection by host and path prefix, for proxies that send no
 * context_extensions (Istio's CUSTOM provider). Rules are validated and
 * ordered once at configuration load; a request walks the ordered list and
 * the first rule that matches wins:
 *
 * 1. an exact host before a wildcard host (`*.example.com`; a longer suffix
 *    first), and either before a rule without a host;
 * 2. within the same host, the longest path prefix first (at equal length a
 *    segment prefix before a character prefix, a case-sensitive one before
 *    one that ignores case), and a rule without a prefix last.
 *
 * Two rules that match exactly the same requests are a configuration error,
 * so the order never depends on where a rule is written.
 *
 * Hosts compare case-insensitively, without the port and a trailing dot; a
 * Host that is not a valid host[:port] is refused as soon as a host rule
 * would judge it (see normalizeHost). Prefixes compare on the path before its
 * query string, the way Envoy's route matchers do: a character prefix
 * (`pathPrefix`, Envoy's `prefix`) matches `/admin`, `/admin.json` and
 * `/admin-x` alike; a segment prefix (`pathSeparatedPrefix`, Envoy's
 * `path_separated_prefix`) matches `/orders`, `/orders/` and `/orders/42`,
 * not `/orders-archive`. A policy rule must never be narrower than the route
 * it protects, hence the character prefix for `pathPrefix`. A path that is
 * not in normal form (see isNormalPath) is never matched against a prefix:
 * when a prefix would decide the policy, the request is refused instead,
 * since the upstream may read such a path as one that belongs to another
 * policy.
 */

export interface RouteRule {
  /** Lower-case host; null matches any host. */
  readonly host: string | null;
  /** True when `host` is the suffix of a wildcard (".example.com" for "*.example.com"). */
  readonly wildcard: boolean;
  /** Null matches any path. A segment prefix has no trailing "/"; lower case when `ignoreCase`. */
  readonly pathPrefix: string | null;
  /** Whole segments only (Envoy's path_separated_prefix), rather than characters (Envoy's prefix). */
  readonly separated: boolean;
  /** ASCII letters compare without case (Envoy's case_sensitive: false). */
  readonly ignoreCase: boolean;
}

export interface RouteTable {
  readonly rules: ReadonlyArray<RouteRule & { readonly policy: string; readonly match: RouteMatch }>;
}

export type RouteMatch =
  | { readonly kind: 'policy'; readonly policy: string }
  | { readonly kind: 'none' }
  /** A prefix would decide, and the path is not in normal form. */
  | { readonly kind: 'abnormal_path' }
  /** A host would decide, and the Host is not a valid host[:port]. */
  | { readonly kind: 'invalid_host' };

export const NO_ROUTE: RouteMatch = Object.freeze({ kind: 'none' });
export const ABNORMAL_PATH: RouteMatch = Object.freeze({ kind: 'abnormal_path' });
export const INVALID_HOST: RouteMatch = Object.freeze({ kind: 'invalid_host' });
export const EMPTY_ROUTES: RouteTable = Object.freeze({ rules: Object.freeze([]) });

const LABEL = '[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?';
const HOSTNAME = new RegExp(`^${LABEL}(\\.${LABEL})*$`);
const HOSTNAME_ANY_CASE = new RegExp(HOSTNAME.source, 'i');
const IPV6 = /^\[[0-9a-f:.]+\]$/;
const IPV6_ANY_CASE = /^\[[0-9a-f:.]+\]$/i;
const MAX_HOST_LENGTH = 253;

/** A `host` of a match rule: a name, "*.suffix" or a bracketed IPv6 address. Throws a TypeError that never quotes it. */
export function compileHost(text: string): { host: string; wildcard: boolean } {
  let host = text.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (IPV6.test(host)) return { host, wildcard: false };
  if (/:\d*$/.test(host)) throw new TypeError('must not include a port: hosts are compared without one');
  const wildcard = host.startsWith('*.');
  const name = wildcard ? host.slice(2) : host;
  if (!HOSTNAME.test(name) || name.length > MAX_HOST_LENGTH) {
    throw new TypeError('must be a host name such as api.example.com, or *.example.com for any host under it');
  }
  return wildcard ? { host: `.${name}`, wildcard: true } : { host, wildcard: false };
}

/**
 * A `pathPrefix` (characters) or `pathSeparatedPrefix` (whole segments) of a
 * match rule; "/" (and, for segments, a trailing "/") means any path,
 * returned as null. Throws a TypeError that never quotes it.
 */
export function compilePathPrefix(text: string, separated = false, ignoreCase = false): string | null {
  if (!text.startsWith('/')) throw new TypeError('must start with "/"');
  if (/[?#*]/.test(text)) throw new TypeError('must be a literal path prefix, without "?", "#" or "*"');
  if (!isNormalPath(text, text.length)) {
    throw new TypeError('must be in normal form: no "//", "." or ".." segments, ";", "\\", control characters, non-ASCII or escaped unreserved characters');
  }
  const trimmed = separated && text.endsWith('/') ? text.slice(0, -1) : text;
  if (trimmed === '' || trimmed === '/') return null;
  return ignoreCase ? trimmed.toLowerCase() : trimmed;
}

/** Whether rule `a` is tried before rule `b` (negative), as documented above. */
export function compareRules(a: RouteRule, b: RouteRule): number {
  const rank = (rule: RouteRule): number => (rule.host === null ? 2 : rule.wildcard ? 1 : 0);
  return (
    rank(a) - rank(b) ||
    (b.wildcard && a.wildcard ? b.host!.length - a.host!.length : 0) ||
    (a.host !== null && b.host !== null && a.host !== b.host ? (a.host < b.host ? -1 : 1) : 0) ||
    (b.pathPrefix?.length ?? -1) - (a.pathPrefix?.length ?? -1) ||
    Number(b.separated) - Number(a.separated) ||
    Number(a.ignoreCase) - Number(b.ignoreCase)
  );
}

/** Order rules as documented above; `policy` names the policy of each rule. */
export function compileRoutes(rules: ReadonlyArray<RouteRule & { policy: string }>): RouteTable {
  if (rules.length === 0) return EMPTY_ROUTES;
  const sorted = [...rules].sort(compareRules);
  const compiled = sorted.map((rule) => {
    const match: RouteMatch = Object.freeze({ kind: 'policy', policy: rule.policy });
    return Object.freeze({
      host: rule.host,
      wildcard: rule.wildcard,
      pathPrefix: rule.pathPrefix,
      separated: rule.separated,
      ignoreCase: rule.ignoreCase,
      policy: rule.policy,
      match,
    });
  });
  return Object.freeze({ rules: Object.freeze(compiled) });
}

/** Two rules that would match exactly the same requests. */
export function sameRoute(a: RouteRule, b: RouteRule): boolean {
  return (
    a.host === b.host &&
    a.wildcard === b.wildcard &&
    a.pathPrefix === b.pathPrefix &&
    (a.pathPrefix === null || (a.separated === b.separated && a.ignoreCase === b.ignoreCase))
  );
}

/** Whether a rule's host takes in a (normalized) request host. */
export function hostMatches(rule: RouteRule, host: string): boolean {
  if (rule.host === null) return true;
  return rule.wildcard ? host.length > rule.host.length && host.endsWith(rule.host) : host === rule.host;
}

/** Whether a rule's prefix takes in `path.slice(0, end)`, a path in normal form. */
export function pathMatches(rule: RouteRule, path: string, end: number): boolean {
  const prefix = rule.pathPrefix;
  if (prefix === null) return true;
  if (end < prefix.length) return false;
  if (rule.ignoreCase ? !startsWithIgnoringCase(path, prefix) : !path.startsWith(prefix)) return false;
  return !rule.separated || end === prefix.length || path.charCodeAt(prefix.length) === SLASH;
}

export function matchRoute(table: RouteTable, rawHost: string, path: string): RouteMatch {
  if (table.rules.length === 0) return NO_ROUTE;
  // Undefined until a host rule needs it; rules with a host come first.
  let host: string | null | undefined;
  const query = path.indexOf('?');
  const end = query < 0 ? path.length : query;
  let normal: boolean | undefined;
  for (const rule of table.rules) {
    if (rule.host !== null) {
      if (host === undefined) {
        host = normalizeHost(rawHost);
        if (host === null) return INVALID_HOST;
      }
      if (!hostMatches(rule, host!)) continue;
    }
    if (rule.pathPrefix === null) return rule.match;
    normal ??= isNormalPath(path, end);
    if (!normal) return ABNORMAL_PATH;
    if (pathMatches(rule, path, end)) return rule.match;
  }
  return NO_ROUTE;
}

/**
 * The host of a Host (or :authority) value, lower case, without the port and
 * a trailing dot; allocates only when something changes. Null when the value
 * is not a valid host[:port] (empty, userinfo, a second ":", characters no
 * host name has): servers and proxies split such a value differently
 * ("api.example.com:1@evil" is api.example.com to a split at ":", evil to a
 * URL parser), so it picks no host rule and, since the default policy may be
 * weaker than the host's own, the request is refused rather than matched.
 */
export function normalizeHost(raw: string): string | null {
  let end: number;
  if (raw.charCodeAt(0) === 0x5b) {
    end = raw.indexOf(']') + 1;
    if (end === 0) return null;
  } else {
    end = raw.indexOf(':');
    if (end < 0) end = raw.length;
  }
  if (end < raw.length && !isPort(raw, end)) return null;
  if (end > 0 && raw.charCodeAt(end - 1) === 0x2e) end -= 1;
  const host = end === raw.length ? raw : raw.slice(0, end);
  if (host.charCodeAt(0) === 0x5b) {
    if (!IPV6_ANY_CASE.test(host)) return null;
  } else if (host.length > MAX_HOST_LENGTH || !HOSTNAME_ANY_CASE.test(host)) {
    return null;
  }
  return /[A-Z]/.test(host) ? host.toLowerCase() : host;
}

/** Whether `raw` from `colon` on is ":" and one to five digits. */
function isPort(raw: string, colon: number): boolean {
  const digits = raw.length - colon - 1;
  if (raw.charCodeAt(colon) !== 0x3a || digits < 1 || digits > 5) return false;
  for (let i = colon + 1; i < raw.length; i += 1) {
    const code = raw.charCodeAt(i);
    if (code < 0x30 || code > 0x39) return false;
  }
  return true;
}

/** `path` starts with the lower-case `prefix`, ASCII letters of `path` compared without case. */
function startsWithIgnoringCase(path: string, prefix: string): boolean {
  for (let i = 0; i < prefix.length; i += 1) {
    const code = path.charCodeAt(i);
    const lower = code >= 0x41 && code <= 0x5a ? code + 0x20 : code;
    if (lower !== prefix.charCodeAt(i)) return false;
  }
  return true;
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
