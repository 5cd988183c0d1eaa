import { X509Certificate, createHash } from 'node:crypto';
import t from 'tap';
import type { AuthRequest } from '../../src/auth-request.js';
import { presentedCertificate, type CertificateSource } from '../../src/credentials/client-certificate.js';
import { createTestPki } from '../support/certificates.js';

const pki = createTestPki();
const der = new X509Certificate(pki.client.cert).raw;
const thumbprint = createHash('sha256').update(der).digest('base64url');
const hex = createHash('sha256').update(der).digest('hex');

function request(headers: Record<string, string[]>, peerCertificate: string | null = null): AuthRequest {
  return { headers: new Map(Object.entries(headers)), contextExtensions: new Map(), method: 'GET', host: 'h', path: '/', requestId: null, peerCertificate };
}
const from = (source: CertificateSource, req: AuthRequest) => presentedCertificate(source, req);

t.test('each source reads its own place only', async (t) => {
  const all = request(
    { 'x-forwarded-client-cert': [`Hash=${hex}`], 'client-cert': [`:${der.toString('base64')}:`] },
    encodeURIComponent(pki.client.cert),
  );
  for (const source of ['peer', 'xfcc', 'clientCert'] as const) t.same(from(source, all), { kind: 'thumbprint', thumbprint }, source);
  t.same(from('peer', request({ 'x-forwarded-client-cert': [`Hash=${hex}`] })), { kind: 'none' }, 'peer ignores headers');
  t.same(from('xfcc', request({}, encodeURIComponent(pki.client.cert))), { kind: 'none' }, 'xfcc ignores the peer');
});

t.test('malformed or ambiguous input is invalid, never a thumbprint', async (t) => {
  const bad: Array<[CertificateSource, AuthRequest]> = [
    ['peer', request({}, '%E0%A4%A')],
    ['peer', request({}, encodeURIComponent(pki.client.cert + pki.server.cert))],
    ['xfcc', request({ 'x-forwarded-client-cert': [`Hash=${hex}`, `Hash=${hex}`] })],
    ['xfcc', request({ 'x-forwarded-client-cert': [`Hash=${hex};Hash=${hex}`] })],
    ['xfcc', request({ 'x-forwarded-client-cert': [`Hash=${hex},Hash=${hex}`] })],
    ['xfcc', request({ 'x-forwarded-client-cert': [`Hash=${hex.slice(2)}`] })],
    ['xfcc', request({ 'x-forwarded-client-cert': [`Cert="${encodeURIComponent('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----')}"`] })],
    ['clientCert', request({ 'client-cert': [`:${der.toString('base64')}:`, `:${der.toString('base64')}:`] })],
    ['clientCert', request({ 'client-cert': [`:${der.toString('base64')}`] })],
    ['clientCert', request({ 'client-cert': [':AAAA:'] })],
  ];
  for (const [source, req] of bad) t.equal(from(source, req).kind, 'invalid', `${source} ${JSON.stringify([...req.headers])}`.slice(0, 80));
  t.same(
    from('xfcc', request({ 'x-forwarded-client-cert': [`By=spiffe://a;Subject="CN=x,O=y;z";Hash=${hex}`] })),
    { kind: 'thumbprint', thumbprint },
    'separators inside quotes are data',
  );
});
