'use strict';
// The lab's stand-in for the user's Node bots, built by the bot roles from a local git repository.
// It needs no npm package: on every request it logs in to the PostgreSQL database named by
// DATABASE_URL with PostgreSQL's own wire protocol (SCRAM-SHA-256, as the server asks) and runs
// `select current_database(), current_user`. 200 with "database": "ok <db> <user>" proves the
// URL, the password and the network path are right; 503 with the error otherwise.
const crypto = require('crypto');
const http = require('http');
const net = require('net');

const VERSION = 'v1';

function pgQuery(urlText, sql) {
  return new Promise((resolve, reject) => {
    const url = new URL(urlText);
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    const database = decodeURIComponent(url.pathname.slice(1));
    const sock = net.connect(Number(url.port || 5432), url.hostname);
    const fail = (err) => { clearTimeout(timer); sock.destroy(); reject(err); };
    const timer = setTimeout(() => fail(new Error('timeout')), 3000);
    const send = (type, body) => {
      const len = Buffer.alloc(4);
      len.writeInt32BE(body.length + 4);
      sock.write(Buffer.concat([Buffer.from(type), len, body]));
    };
    const hmac = (key, text) => crypto.createHmac('sha256', key).update(text).digest();
    let nonce = '';
    let firstBare = '';
    let salted = null;
    let authMessage = '';
    let queried = false;
    let row = null;

    function handle(type, body) {
      if (type === 'E') {
        const fields = body.toString().split('\0');
        const msg = fields.find((f) => f.startsWith('M')) || 'Munknown error';
        fail(new Error(msg.slice(1)));
      } else if (type === 'R') {
        const code = body.readInt32BE(0);
        if (code === 10) { // AuthenticationSASL: start SCRAM-SHA-256
          nonce = crypto.randomBytes(18).toString('base64');
          firstBare = `n=,r=${nonce}`;
          const first = Buffer.from(`n,,${firstBare}`);
          const len = Buffer.alloc(4);
          len.writeInt32BE(first.length);
          send('p', Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len, first]));
        } else if (code === 11) { // AuthenticationSASLContinue: prove the password
          const serverFirst = body.subarray(4).toString();
          const attrs = Object.fromEntries(serverFirst.split(',').map((a) => [a[0], a.slice(2)]));
          if (!attrs.r.startsWith(nonce)) return fail(new Error('server nonce mismatch'));
          salted = crypto.pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), 32, 'sha256');
          const clientKey = hmac(salted, 'Client Key');
          const storedKey = crypto.createHash('sha256').update(clientKey).digest();
          const finalNoProof = `c=biws,r=${attrs.r}`;
          authMessage = `${firstBare},${serverFirst},${finalNoProof}`;
          const signature = hmac(storedKey, authMessage);
          const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]));
          send('p', Buffer.from(`${finalNoProof},p=${proof.toString('base64')}`));
        } else if (code === 12) { // AuthenticationSASLFinal: the server proves it knew the verifier
          const expected = hmac(hmac(salted, 'Server Key'), authMessage).toString('base64');
          if (body.subarray(4).toString() !== `v=${expected}`) fail(new Error('bad server signature'));
        } else if (code === 3) { // cleartext password
          send('p', Buffer.from(`${password}\0`));
        } else if (code === 5) { // md5
          const inner = crypto.createHash('md5').update(password + user).digest('hex');
          const outer = crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), body.subarray(4, 8)])).digest('hex');
          send('p', Buffer.from(`md5${outer}\0`));
        } else if (code !== 0) {
          fail(new Error(`unsupported authentication ${code}`));
        }
      } else if (type === 'D') { // DataRow
        const n = body.readInt16BE(0);
        let off = 2;
        row = [];
        for (let c = 0; c < n; c += 1) {
          const len = body.readInt32BE(off);
          row.push(body.subarray(off + 4, off + 4 + len).toString());
          off += 4 + len;
        }
      } else if (type === 'Z') { // ReadyForQuery
        if (!queried) {
          queried = true;
          send('Q', Buffer.from(`${sql}\0`));
        } else {
          clearTimeout(timer);
          send('X', Buffer.alloc(0));
          sock.end();
          resolve(row);
        }
      }
      return undefined;
    }

    let buf = Buffer.alloc(0);
    sock.on('error', fail);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= buf.readInt32BE(1) + 1) {
        const len = buf.readInt32BE(1);
        handle(String.fromCharCode(buf[0]), buf.subarray(5, len + 1));
        buf = buf.subarray(len + 1);
      }
    });
    const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`);
    const head = Buffer.alloc(8);
    head.writeInt32BE(params.length + 8);
    head.writeInt32BE(196608, 4); // protocol 3.0
    sock.write(Buffer.concat([head, params]));
  });
}

const server = http.createServer(async (req, res) => {
  let database;
  try {
    const [db, who] = await pgQuery(process.env.DATABASE_URL, 'select current_database(), current_user');
    database = `ok ${db} ${who}`;
  } catch (err) {
    database = `error: ${err.message}`;
  }
  const body = JSON.stringify({
    service: 'lab-bot',
    version: VERSION,
    path: req.url,
    user: process.getuid(),
    database,
    env: Object.keys(process.env).filter((k) => /^[A-Z][A-Z0-9_]*$/.test(k)).sort(), // names only
  });
  res.writeHead(database.startsWith('ok') ? 200 : 503, { 'Content-Type': 'application/json' });
  res.end(body);
});
server.listen(Number(process.env.PORT || 3000), () => console.log(`lab-bot ${VERSION} on ${server.address().port}`));
