#!/usr/bin/env node
// kite.js 1.0.13 KiteServer named "math" for the interop tests.
//
// Usage: node server.js [--port N]
// Listens on 127.0.0.1 with kite.js's default transport (a plain WebSocket
// server that accepts any path), prints {"port": N} on stdout once it is
// listening, and exits 0 on SIGTERM or SIGINT. Port 0, the default, lets the
// system choose a free port.
//
// Methods, all callable without authentication:
//   square(x)         -> x * x; an argumentError when x is not a number
//   fail([message])   -> error {"type": "testError", "message": message or "boom", "code": "E_TEST"}
'use strict'

const { parseArgs } = require('node:util')

// kite.js logs through console.info and console.log. Send those to stderr so
// stdout carries only the ready line.
console.log = console.info = console.warn = (...args) => console.error(...args)

const { KiteServer } = require('kite.js')

// kite.js log levels: 1 = ERROR, 5 = DEBUG.
const LOG_LEVEL = process.env.KITEJS_DEBUG ? 5 : 1

function exitWith(message, code) {
  process.stderr.write(`server.js: ${message}\n`)
  process.exit(code)
}

// kite.js's WebSocket transport binds 0.0.0.0 unless its options carry a
// hostname, and KiteServer.listen() passes none, so this subclass supplies
// 127.0.0.1 to keep the test server on loopback.
class LoopbackWebSocketServer extends KiteServer.transport.WebSocket {
  constructor(options) {
    super({ ...options, hostname: '127.0.0.1' })
  }

  // ws 3.3.3 has no address() on its server and keeps the http.Server in the
  // private field _server. The lock file pins that version.
  boundPort() {
    return this.server._server.address().port
  }
}

// kite.js calls a method as fn(...withArgs, callback, kiteInfo), so the number
// of leading arguments is whatever the caller sent.
function splitArguments(args) {
  const callback = args[args.length - 2]
  return { params: args.slice(0, -2), callback }
}

function square(...args) {
  const { params, callback } = splitArguments(args)
  const [x] = params
  if (params.length !== 1 || typeof x !== 'number') {
    return callback({
      type: 'argumentError',
      message: `square expects one number, got ${JSON.stringify(params)}`,
      code: '',
    })
  }
  return callback(null, x * x)
}

function fail(...args) {
  const { params, callback } = splitArguments(args)
  const message = typeof params[0] === 'string' ? params[0] : 'boom'
  // A plain object: kite.js serialises an Error instance as {} and a KiteError without a type.
  return callback({ type: 'testError', message, code: 'E_TEST' })
}

function main() {
  let values
  try {
    values = parseArgs({ options: { port: { type: 'string', default: '0' } } }).values
  } catch (err) {
    exitWith(`${err.message}\nusage: node server.js [--port N]`, 2)
  }
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    exitWith(`invalid --port ${JSON.stringify(values.port)}: expected an integer from 0 to 65535`, 2)
  }

  const kite = new KiteServer({
    name: 'math',
    username: 'interop',
    environment: 'test',
    version: '1.0.0',
    logLevel: LOG_LEVEL,
    serverClass: LoopbackWebSocketServer,
    api: {
      square: { func: square, auth: false },
      fail: { func: fail, auth: false },
    },
  })
  kite.listen(port)

  // The ws server re-emits its http.Server's 'listening' and 'error' events.
  const transport = kite.server
  transport.server.once('error', (err) => exitWith(`listening on 127.0.0.1:${port} failed: ${err.message}`, 1))
  transport.server.once('listening', () => {
    process.stdout.write(JSON.stringify({ port: transport.boundPort() }) + '\n')
  })

  const stop = (signal) => {
    process.stderr.write(`server.js: ${signal} received, closing\n`)
    kite.close()
    process.exit(0)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

main()
