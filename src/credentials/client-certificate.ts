/**
 * The client certificate a request comes with, as the RFC 8705 section 3
 * thumbprint (x5t#S256: base64url of the SHA-256 of the DER), from the one
 * source the policy names. Nothing is guessed: a header source is trusted
 * only because the operator said the proxy in front sets it and drops any
 * client-sent copy.
 *
 * - peer: Envoy's attributes.source.certificate (include_peer_certificate),
 *   the URL-encoded PEM of the TLS connection Envoy terminated;
 * - xfcc: x-forwarded-client-cert, one element, its Hash (hex SHA-256 of the
 *   DER) or Cert (URL-encoded PEM);
 * - clientCert: RFC 9440 Client-Cert, a structured-field byte sequence of the DER.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { headerValues, type AuthRequest } from '../auth-request.js';

export const CERTIFICATE_SOURCES = ['peer', 'xfcc', 'clientCert'] as const;
export type CertificateSource = (typeof CERTIFICATE_SOURCES)[number];

export type PresentedCertificate =
  | { kind: 'thumbprint'; thumbprint: string }
  | { kind: 'none' }
  | { kind: 'invalid'; description: string };

const NONE: PresentedCertificate = Object.freeze({ kind: 'none' });
/** Longest certificate text read (a PEM of a few KiB; Envoy's header limit is 60 KiB in all). */
const MAX_CERTIFICATE_LENGTH = 32 * 1024;

export function presentedCertificate(source: CertificateSource, request: AuthRequest): PresentedCertificate {
  switch (source) {
    case 'peer': {
      const pem = request.peerCertificate;
      if (pem === undefined || pem === null || pem === '') return NONE;
      return fromPem(pem);
    }
    case 'xfcc':
      return fromXfcc(headerValues(request, 'x-forwarded-client-cert'));
    case 'clientCert':
      return fromClientCert(headerValues(request, 'client-cert'));
  }
}

/** x5t#S256 of a DER certificate, after checking it is one. */
export function certificateThumbprint(der: Buffer): string | null {
  try {
    return createHash('sha256').update(new X509Certificate(der).raw).digest('base64url');
  } catch {
    return null;
  }
}

function fromPem(encoded: string): PresentedCertificate {
  if (encoded.length > MAX_CERTIFICATE_LENGTH) return invalid('the client certificate is too long');
  let pem: string;
  try {
    pem = decodeURIComponent(encoded);
  } catch {
    return invalid('the client certificate is not URL-encoded PEM');
  }
  // X509Certificate takes the first certificate of a chain; a chain here is not what Envoy sends.
  if (pem.split('-----BEGIN CERTIFICATE-----').length !== 2) return invalid('the client certificate is not one PEM certificate');
  const thumbprint = certificateThumbprint(Buffer.from(pem));
  return thumbprint === null ? invalid('the client certificate is not a valid certificate') : { kind: 'thumbprint', thumbprint };
}

function fromXfcc(values: readonly string[]): PresentedCertificate {
  if (values.length === 0) return NONE;
  if (values.length > 1) return invalid('more than one x-forwarded-client-cert header');
  const elements = splitOutsideQuotes(values[0]!, ',');
  // Several elements are several hops (APPEND_FORWARD): which one is the client is not ours to guess.
  if (elements.length !== 1) return invalid('x-forwarded-client-cert has more than one element');
  let hash: string | null = null;
  let cert: string | null = null;
  for (const pair of splitOutsideQuotes(elements[0]!, ';')) {
    const equals = pair.indexOf('=');
    if (equals < 0) continue;
    const name = pair.slice(0, equals).trim().toLowerCase();
    const value = unquote(pair.slice(equals + 1).trim());
    if (name === 'hash') {
      if (hash !== null) return invalid('x-forwarded-client-cert has more than one Hash');
      hash = value;
    } else if (name === 'cert') {
      if (cert !== null) return invalid('x-forwarded-client-cert has more than one Cert');
      cert = value;
    }
  }
  let fromHash: string | null = null;
  if (hash !== null) {
    if (!/^[0-9a-fA-F]{64}$/.test(hash)) return invalid('the x-forwarded-client-cert Hash is not a hex SHA-256');
    fromHash = Buffer.from(hash, 'hex').toString('base64url');
  }
  if (cert === null) return fromHash === null ? NONE : { kind: 'thumbprint', thumbprint: fromHash };
  const fromCert = fromPem(cert);
  if (fromCert.kind !== 'thumbprint') return fromCert;
  if (fromHash !== null && fromHash !== fromCert.thumbprint) return invalid('the x-forwarded-client-cert Hash and Cert disagree');
  return fromCert;
}

function fromClientCert(values: readonly string[]): PresentedCertificate {
  if (values.length === 0) return NONE;
  if (values.length > 1) return invalid('more than one Client-Cert header');
  const value = values[0]!.trim();
  if (value.length > MAX_CERTIFICATE_LENGTH) return invalid('the client certificate is too long');
  // RFC 8941 byte sequence: ":" base64 ":".
  const match = /^:([A-Za-z0-9+/]+={0,2}):$/.exec(value);
  if (match === null) return invalid('Client-Cert is not a structured-field byte sequence');
  const thumbprint = certificateThumbprint(Buffer.from(match[1]!, 'base64'));
  return thumbprint === null ? invalid('the client certificate is not a valid certificate') : { kind: 'thumbprint', thumbprint };
}

function invalid(description: string): PresentedCertificate {
  return { kind: 'invalid', description };
}

/** Splits at `separator` where it is not inside a quoted string (XFCC quotes values holding , ; or =). */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i];
    if (char === '\\' && quoted) i += 1;
    else if (char === '"') quoted = !quoted;
    else if (char === separator && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.filter((part) => part.trim() !== '');
}

function unquote(value: string): string {
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) return value.slice(1, -1).replace(/\\(.)/g, '$1');
  return value;
}
