"""CRI v1 (runtime.v1) protobuf and gRPC bindings.

api_pb2.py, api_pb2.pyi and api_pb2_grpc.py are generated from
proto/runtime/v1/api.proto by tools/gen_proto.py; do not edit them by hand.
"""
