// Package wire encodes and decodes MQTT 3.1.1 control packets.
package wire
