// Package wire is the Kinesis Data Streams wire format: everything about
// AWS's bytes and nothing about what an operation does.
//
//   - Codecs: JSON 1.1 (application/x-amz-json-1.1) and CBOR 1.1
//     (application/x-amz-cbor-1.1), chosen by Content-Type (codec.go,
//     cbor.go). Both decode the same request structs, whose member
//     types (Blob, OptInt, OptBool, OptTime) carry each protocol's rules, and
//     both render the same outputs.
//   - The data plane's hot shapes (records.go): PutRecords' request, decoded
//     by a non-reflective JSON parser when it is plain (fastjson.go), and the
//     PutRecords and GetRecords responses, rendered without reflection.
//   - Errors (errors.go): AWS's __type names and the Error every failure
//     becomes; SerializationException texts as AWS's deserializer words them.
//   - Model validation (validate.go): the Coral validator's constraint texts,
//     in AWS's order, with Java's string lengths.
//   - The pre-dispatch protocol (protocol.go): request ids, CORS, AWS's
//     checks before dispatch in AWS's order and their exact answers (Front),
//     the form of SigV4 authentication, and the request body cap.
//   - Stream ARNs and the stream selector every stream-targeted request
//     embeds (arn.go); sealed tokens for shard iterators and NextTokens
//     (tokens.go).
//
// The package imports nothing of shardlog: the operations (package api) map
// storage's results and errors to these shapes.
package wire
