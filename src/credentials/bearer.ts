/**
 * Bearer token extraction from the Authorization header (RFC 6750 section 2.1),
 * and of DPoP-bound tokens under the DPoP scheme (RFC 9449 section 7.1), which
 * shares its syntax. Pure: takes the header's values as they arrived, returns
 * what to do.
 */

export type BearerResult =
  | { kind: 'token'; token: string; scheme: 'bearer' | 'dpop' }
  /** No Authorization header, or one with another scheme: the client sent no bearer credentials. */
  | { kind: 'missing' }
  /** A malformed bearer credential: RFC 6750 invalid_request. */
  | { kind: 'invalid'; description: string };

// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const SCHEME = /^bearer$/i;
const SCHEMES = /^(bearer|dpop)$/i;

/**
 * @param values every Authorization header value of the request (one element per header line)
 * @param maxLength longest token accepted
 * @param dpop whether "DPoP <token>" is read too; else that scheme is no bearer credential
 */
export function extractBearer(values: readonly string[], maxLength: number, dpop = false): BearerResult {
  if (values.length === 0) return { kind: 'missing' };
  if (values.length > 1) return { kind: 'invalid', description: 'more than one Authorization header' };
  const value = trimOws(values[0]!);
  if (value === '') return { kind: 'invalid', description: 'empty Authorization header' };

  const space = indexOfWhitespace(value);
  const scheme = space < 0 ? value : value.slice(0, space);
  if (!(dpop ? SCHEMES : SCHEME).test(scheme)) {
    // Envoy joins repeated headers with ","; "Basic x,Bearer y" must not pass as "missing".
    return (dpop ? /,\s*(bearer|dpop)(\s|$)/i : /,\s*bearer(\s|$)/i).test(value)
      ? { kind: 'invalid', description: 'more than one credential in the Authorization header' }
      : { kind: 'missing' };
  }
  if (space < 0) return { kind: 'invalid', description: 'the bearer token is empty' };
  const token = trimOws(value.slice(space + 1));
  if (token === '') return { kind: 'invalid', description: 'the bearer token is empty' };
  if (token.length > maxLength) return { kind: 'invalid', description: `the bearer token is longer than ${maxLength} characters` };
  if (!B64TOKEN.test(token)) {
    return {
      kind: 'invalid',
      description: /[\s,]/.test(token)
        ? 'more than one credential in the Authorization header'
        : 'the bearer token has characters outside RFC 6750 b64token',
    };
  }
  return { kind: 'token', token, scheme: scheme.length === 4 ? 'dpop' : 'bearer' };
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start += 1;
  while (end > start && isOws(value.charCodeAt(end - 1))) end -= 1;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function indexOfWhitespace(value: string): number {
  for (let i = 0; i < value.length; i += 1) if (isOws(value.charCodeAt(i))) return i;
  return -1;
}
