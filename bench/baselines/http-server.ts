/**
 * The HTTP mode's baseline: a plain node:http server answering every request
 * 200 with the headers in BENCH_HTTP_HEADERS (JSON [[name, value], ...]; the
 * service's own allow, copied) and no body. Also the upstream behind nginx.
 * Run as its own process; prints a JSON 'serving' line.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const headers = JSON.parse(process.env.BENCH_HTTP_HEADERS ?? '[]') as Array<[string, string]>;
const head = [...headers.flat(), 'content-length', '0'];
const server = createServer({ keepAliveTimeout: 60_000 }, (_request, response) => {
  response.writeHead(200, head);
  response.end();
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'serving', grpcPort: port, opsPort: 0 })}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
