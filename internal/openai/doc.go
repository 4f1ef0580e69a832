// Package openai serves OpenAI's Images API on top of the fal endpoint:
// POST /v1/images/generations, POST /v1/images/edits (multipart) and
// GET /v1/models, with OpenAI's streaming events and error envelope.
//
// Nothing here validates generation parameters or runs a model. A request
// is translated into the fal endpoint's input JSON (pure functions in
// request.go), handed to a Backend (the server's queue, with its keys,
// limits and metrics), and the fal output or fal error is translated back
// (response.go, errors.go). So one validator, package wire's, judges every
// request whichever API it came through; its 422 locations are mapped back
// to OpenAI parameter names. docs/openai.md describes the mapping.
package openai
