"""The wire protocols. Each is one module (or small package) with both of its faces, behind
`base.Protocol`: the gateway's routes, which answer and queue the raw body, and the worker's pure,
total decoder, which turns that body into canonical notices. `registry` lists them all."""
