module iotd

go 1.26
